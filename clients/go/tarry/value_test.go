package tarry

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestToValueRoundTrip(t *testing.T) {
	type named string
	type order struct {
		ID    string   `json:"id"`
		Items []string `json:"items"`
		Total float64  `json:"total"`
		Note  string   `json:"note,omitempty"`
	}
	cases := []struct {
		name string
		in   any
		want any // what FromValue gives back
	}{
		{"nil", nil, nil},
		{"bool", true, true},
		{"string", "hé", "hé"},
		{"named string", named("x"), "x"},
		{"int", 1500, 1500.0},
		{"int8", int8(-3), -3.0},
		{"uint64", uint64(7), 7.0},
		{"2^53", int64(1) << 53, float64(int64(1) << 53)},
		{"float32", float32(0.5), 0.5},
		{"json.Number int", json.Number("42"), 42.0},
		{"json.Number float", json.Number("-1.25e2"), -125.0},
		{"empty object", map[string]any{}, map[string]any{}},
		{"typed map", map[string]int{"a": 1}, map[string]any{"a": 1.0}},
		{"nil map", map[string]any(nil), nil},
		{"nil slice", []any(nil), nil},
		{"empty slice", []any{}, []any{}},
		{"array", [2]string{"a", "b"}, []any{"a", "b"}},
		{"pointer", new(3), 3.0},
		{"nil pointer", (*int)(nil), nil},
		{"nested", map[string]any{"a": []any{1, "x", nil, map[string]any{"b": false}}},
			map[string]any{"a": []any{1.0, "x", nil, map[string]any{"b": false}}}},
		{"struct via encoding/json", order{ID: "o-1", Items: []string{"book"}, Total: 9.5},
			map[string]any{"id": "o-1", "items": []any{"book"}, "total": 9.5}},
		{"json.RawMessage", json.RawMessage(`{"n":[1,2]}`), map[string]any{"n": []any{1.0, 2.0}}},
		{"time.Time", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "2026-01-02T03:04:05Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, err := ToValue(c.in)
			if err != nil {
				t.Fatalf("ToValue(%#v): %v", c.in, err)
			}
			// It must survive the wire too.
			raw, err := proto.Marshal(v)
			if err != nil {
				t.Fatalf("marshal: %v", err)
			}
			back := &structpb.Value{}
			if err := proto.Unmarshal(raw, back); err != nil {
				t.Fatalf("unmarshal: %v", err)
			}
			if got := FromValue(back); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("round trip of %#v gave %#v, want %#v", c.in, got, c.want)
			}
		})
	}
}

func TestToValueRefuses(t *testing.T) {
	cycle := map[string]any{}
	cycle["self"] = cycle
	cases := []struct {
		name string
		in   any
		path string
		says string
	}{
		{"NaN", math.NaN(), "value", "JSON has no NaN"},
		{"+Inf", map[string]any{"x": math.Inf(1)}, "value.x", "JSON has no +Inf"},
		{"-Inf in a list", []any{1, math.Inf(-1)}, "value[1]", "JSON has no -Inf"},
		{"float32 Inf", float32(math.Inf(1)), "value", "+Inf"},
		{"int beyond 2^53", int64(1)<<53 + 1, "value", "beyond 2^53"},
		{"uint beyond 2^53", uint64(math.MaxUint64), "value", "beyond 2^53"},
		{"json.Number beyond 2^53", json.Number("9007199254740993"), "value", "beyond 2^53"},
		{"json.Number beyond int64", json.Number("123456789012345678901"), "value", "beyond 2^53"},
		{"json.Number overflowing a double", json.Number("1e400"), "value", "+Inf"},
		{"json.Number not a number", json.Number("twelve"), "value", "not a JSON number"},
		{"channel", map[string]any{"c": make(chan int)}, "value.c", "chan int is not JSON data"},
		{"func", []any{func() {}}, "value[0]", "func() is not JSON data"},
		{"complex", complex(1, 2), "value", "complex128 is not JSON data"},
		{"int keys", map[int]string{1: "a"}, "value", "keys must be strings"},
		{"invalid UTF-8", "\xff", "value", "not valid UTF-8"},
		{"invalid UTF-8 key", map[string]any{"\xff": 1}, "value", "not valid UTF-8"},
		{"struct with NaN", struct{ F float64 }{math.NaN()}, "value", "NaN"},
		{"struct with a channel", struct{ C chan int }{make(chan int)}, "value", "unsupported type"},
		{"cycle", cycle, "value.self", "a cycle?"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ToValue(c.in)
			var verr *ValueError
			if !errors.As(err, &verr) {
				t.Fatalf("ToValue(%T) = %v, want a *ValueError", c.in, err)
			}
			if !strings.HasPrefix(verr.Path, c.path) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("error %q (path %q), want path %q and %q", err, verr.Path, c.path, c.says)
			}
		})
	}
}

func TestFromValueUnset(t *testing.T) {
	if got := FromValue(nil); got != nil {
		t.Fatalf("FromValue(nil) = %#v", got)
	}
	if got := FromValue(&structpb.Value{}); got != nil {
		t.Fatalf("FromValue(unset kind) = %#v", got)
	}
	if got := FromStruct(nil); got != nil {
		t.Fatalf("FromStruct(nil) = %#v", got)
	}
}

func TestDecode(t *testing.T) {
	var report struct {
		Processed int      `json:"processed"`
		Tags      []string `json:"tags"`
	}
	if err := Decode(map[string]any{"processed": 30.0, "tags": []any{"a"}}, &report); err != nil {
		t.Fatal(err)
	}
	if report.Processed != 30 || len(report.Tags) != 1 {
		t.Fatalf("decoded %+v", report)
	}
	if err := Decode("text", &report); err == nil {
		t.Fatal("decoding a string into a struct succeeded")
	}
}
