// Follow an expense approval: the snapshot, then each event until the last one, approving
// the expense when it is AWAITING.
//
//	go run ./examples/watch [address]   # default localhost:50051
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/tarry-dev/tarry/clients/go/tarry"
)

func main() {
	address := "localhost:50051"
	if len(os.Args) > 1 {
		address = os.Args[1]
	}
	client, err := tarry.Dial(address)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx := context.Background()

	ex, err := client.Run(ctx, "expense-approval", nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	// The snapshot, then each event; the loop ends after the terminal one. A stream that
	// breaks is reopened from the last sequence seen, so nothing is missed or repeated.
	for item, err := range client.Watch(ctx, ex.ID, nil) {
		if err != nil {
			log.Fatal(err)
		}
		if item.Execution != nil {
			fmt.Printf("#%d snapshot: %s\n", item.Sequence, item.Execution.Status)
		} else if item.Event.NodeID != "" {
			fmt.Printf("#%d %s %s\n", item.Sequence, item.Event.Type, item.Event.NodeID)
		} else {
			fmt.Printf("#%d %s %s\n", item.Sequence, item.Event.Type, item.Event.Status)
		}
		if item.Status() == tarry.StatusAwaiting {
			_, err := client.Resume(ctx, ex.ID, map[string]any{"approved": true, "reviewer": "Bob"}, nil)
			if err != nil {
				log.Fatal(err)
			}
		}
	}
}
