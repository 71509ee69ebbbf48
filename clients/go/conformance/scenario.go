package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/tarry-dev/tarry/clients/go/tarry"
)

// The operation keys a step may have, exactly one of them.
var operations = []string{"run", "resume", "suspend", "cancel", "get", "delete", "describe", "events", "watch", "await", "list", "pause", "watch_many", "bulk", "bulk_await"}

// The other keys a step may have.
var stepKeys = []string{"save", "expect", "expect_events", "expect_changes", "error", "timeout_s"}

type scenario struct {
	Name  string           `json:"name"`
	Steps []map[string]any `json:"steps"`
}

// load reads every scenario of every *.json file in dir, in file order. Numbers stay
// json.Number, so that integers reach the client exactly as written.
func load(dir string) ([]scenario, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no scenario files in %s", dir)
	}
	slices.Sort(paths)
	var all []scenario
	seen := map[string]bool{}
	for _, path := range paths {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var file []scenario
		if err := dec.Decode(&file); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for _, sc := range file {
			if seen[sc.Name] {
				return nil, fmt.Errorf("%s: scenario name used twice: %q", path, sc.Name)
			}
			seen[sc.Name] = true
		}
		all = append(all, file...)
	}
	return all, nil
}

// newUID is the token that {uid} becomes: unique to one run of one scenario.
func newUID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// operation is the step's one operation key.
func operation(step map[string]any) (string, error) {
	var found []string
	for _, op := range operations {
		if _, ok := step[op]; ok {
			found = append(found, op)
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("a step needs exactly one operation, not %v", found)
	}
	for key := range step {
		if key != found[0] && !slices.Contains(stepKeys, key) {
			return "", fmt.Errorf("unknown step key %q", key)
		}
	}
	return found[0], nil
}

// substitute rewrites every string in a step: {uid}, $name / $name.sequence for an
// execution an earlier step saved, $name.next / $name.cursor for a saved page's
// next_page_token / watch_cursor, and $name for the id of a batch a bulk step saved.
func substitute(value any, uid string, saved map[string]any) (any, error) {
	switch v := value.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for key, item := range v {
			item, err := substitute(item, uid, saved)
			if err != nil {
				return nil, err
			}
			out[key] = item
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, item := range v {
			item, err := substitute(item, uid, saved)
			if err != nil {
				return nil, err
			}
			out[i] = item
		}
		return out, nil
	case string:
		if !strings.HasPrefix(v, "$") {
			return strings.ReplaceAll(v, "{uid}", uid), nil
		}
		name, field, _ := strings.Cut(v[1:], ".")
		switch found := saved[name].(type) {
		case *tarry.Execution:
			switch field {
			case "":
				return found.ID, nil
			case "sequence":
				return json.Number(strconv.FormatInt(found.LastSequence, 10)), nil
			}
			return nil, fmt.Errorf("%s: only .sequence may follow a saved execution", v)
		case *tarry.ExecutionPage:
			switch field {
			case "next":
				return found.NextPageToken, nil
			case "cursor":
				return found.WatchCursor, nil
			}
			return nil, fmt.Errorf("%s: only .next or .cursor may follow a saved page", v)
		case *tarry.BulkStart:
			if field != "" {
				return nil, fmt.Errorf("%s: nothing may follow a saved batch", v)
			}
			if found.Bulk == nil {
				return nil, fmt.Errorf("%s: the bulk step saved as %q started no batch (a dry run)", v, name)
			}
			return found.Bulk.ID, nil
		}
		return nil, fmt.Errorf("%s: nothing saved as %q", v, name)
	}
	return value, nil
}
