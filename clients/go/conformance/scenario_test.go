package main

import (
	"encoding/json"
	"testing"

	"github.com/tarry-dev/tarry/clients/go/tarry"
)

func TestSubstitute(t *testing.T) {
	saved := map[string]any{"ex": &tarry.Execution{ID: "e-1", LastSequence: 5},
		"page": &tarry.ExecutionPage{NextPageToken: "tok"}}
	step := map[string]any{"get": map[string]any{"execution_id": "$ex"},
		"expect": map[string]any{"id": "order-{uid}", "n": []any{"$ex.sequence", "a{uid}b", "", "$page.next"}}}
	got, err := substitute(step, "u1", saved)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"get": map[string]any{"execution_id": "e-1"},
		"expect": map[string]any{"id": "order-u1", "n": []any{json.Number("5"), "au1b", "", "tok"}}}
	if !jsonEqual(got, want) {
		t.Fatalf("got %s, want %s", show(got), show(want))
	}
	for _, bad := range []string{"$nope", "$ex.id", "$ex.next", "$page", "$page.sequence"} {
		if _, err := substitute(bad, "u1", saved); err == nil {
			t.Errorf("%s was substituted", bad)
		}
	}
}

func TestJSONEqual(t *testing.T) {
	cases := []struct {
		a, b any
		same bool
	}{
		{json.Number("1500"), 1500.0, true},
		{map[string]any{"a": json.Number("1")}, map[string]any{"a": 1.0}, true},
		{map[string]any{"a": 1.0}, map[string]any{"a": 1.0, "b": nil}, false},
		{[]any{"x"}, []any{"x", "y"}, false},
		{nil, nil, true},
		{nil, map[string]any{}, false},
		{true, 1.0, false},
		{"1", 1.0, false},
	}
	for _, c := range cases {
		if jsonEqual(c.a, c.b) != c.same {
			t.Errorf("jsonEqual(%s, %s) != %v", show(c.a), show(c.b), c.same)
		}
	}
}

func TestSameSet(t *testing.T) {
	if sameSet("w", []string{"a", "b"}, []any{"b", "a"}) != nil {
		t.Error("the same set differed")
	}
	if sameSet("w", []string{"a", "a"}, []any{"a"}) == nil {
		t.Error("a repeat passed")
	}
	if sameSet("w", []string{}, []any{"a"}) == nil {
		t.Error("a missing item passed")
	}
}

func TestCheckPage(t *testing.T) {
	page := &tarry.ExecutionPage{NextPageToken: "tok", Executions: []tarry.Execution{
		{ID: "b", Status: tarry.StatusCancelled}, {ID: "a", Status: tarry.StatusSuspended}}}
	good := map[string]any{"count": json.Number("2"), "ids": []any{"b", "a"}, "includes": []any{"a"},
		"statuses": []any{"SUSPENDED", "CANCELLED"}, "more": true}
	if err := checkPage(page, good); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []map[string]any{{"count": json.Number("1")}, {"ids": []any{"a", "b"}},
		{"includes": []any{"c"}}, {"statuses": []any{"SUSPENDED"}}, {"more": false}, {"nope": 1.0}} {
		if checkPage(page, bad) == nil {
			t.Errorf("%s passed", show(bad))
		}
	}
	if err := checkPage(&tarry.ExecutionPage{}, map[string]any{"count": json.Number("0"), "statuses": []any{}, "more": false}); err != nil {
		t.Error(err)
	}
}
