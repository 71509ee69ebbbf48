// The Go runner of the conformance suite (tests/conformance/README.md): it runs every
// scenario through the tarry package against TARRY_ADDRESS and prints one JSON line per
// scenario. It exits 0 when it ran them all, whatever their outcome.
//
//	go build -o .bin/conformance ./conformance
//	TARRY_ADDRESS=127.0.0.1:50051 TARRY_SCENARIOS=../../tests/conformance/scenarios .bin/conformance
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/tarry-dev/tarry/clients/go/tarry"
)

// defaultTimeout is a step's deadline when it names no timeout_s.
const defaultTimeout = 10 * time.Second

type result struct {
	Scenario string `json:"scenario"`
	OK       bool   `json:"ok"`
	Error    string `json:"error,omitempty"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(1)
	}
}

func run() error {
	address := envOr("TARRY_ADDRESS", "127.0.0.1:50051")
	dir := envOr("TARRY_SCENARIOS", "tests/conformance/scenarios")
	only := os.Getenv("TARRY_ONLY")

	scenarios, err := load(dir)
	if err != nil {
		return err
	}
	if only != "" && !hasScenario(scenarios, only) {
		return fmt.Errorf("no scenario named %q in %s", only, dir)
	}
	client, err := tarry.Dial(address, tarry.WithTimeout(defaultTimeout))
	if err != nil {
		return err
	}
	defer client.Close()

	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	for _, sc := range scenarios {
		if only != "" && sc.Name != only {
			continue
		}
		line := result{Scenario: sc.Name, OK: true}
		if err := runScenario(client, sc); err != nil {
			line.OK, line.Error = false, err.Error()
		}
		if err := out.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

func hasScenario(scenarios []scenario, name string) bool {
	for _, sc := range scenarios {
		if sc.Name == name {
			return true
		}
	}
	return false
}
