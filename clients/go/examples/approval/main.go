// The expense approval: run the workflow until the manager's approval is due, approve it,
// then show a typed error by resuming the finished execution again.
//
//	go run ./examples/approval [address]   # default localhost:50051
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Wait: answer once the execution stops RUNNING, here AWAITING the manager.
	ex, err := client.Run(ctx, "expense-approval", nil, &tarry.RunOptions{Wait: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ex.Status, ex.WaitingNodeIDs(), ex.State["request"])

	ex, err = client.Resume(ctx, ex.ID, map[string]any{"approved": true, "reviewer": "Bob"},
		&tarry.ResumeOptions{Wait: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ex.Status, ex.Result)

	// Resuming a COMPLETED execution is refused: FAILED_PRECONDITION, reason WRONG_STATE.
	_, err = client.Resume(ctx, ex.ID, map[string]any{"approved": true}, nil)
	var tErr *tarry.Error
	if errors.As(err, &tErr) && errors.Is(err, tarry.ErrWrongState) {
		fmt.Println(tarry.CodeName(tErr.Code), tErr.Reason, tErr.Metadata["status"])
	} else {
		log.Fatalf("expected WRONG_STATE, got %v", err)
	}

	// An execution that does not exist.
	if _, err := client.Get(ctx, "no-such-execution"); errors.Is(err, tarry.ErrExecutionNotFound) {
		fmt.Println(err)
	}
}
