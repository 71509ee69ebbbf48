package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
)

// JSON as the scenarios and the client hold it: numbers may be json.Number (scenarios) or
// float64 (the client), and compare by value.

// normalize turns every number into a float64, so that values compare with ==.
func normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil {
			return x
		}
		return f
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, item := range x {
			out[k] = normalize(item)
		}
		return out
	case map[string]string:
		out := make(map[string]any, len(x))
		for k, item := range x {
			out[k] = item
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			out[i] = normalize(item)
		}
		return out
	case []string:
		out := make([]any, len(x))
		for i, item := range x {
			out[i] = item
		}
		return out
	}
	return v
}

// jsonEqual is JSON equality: same kinds, numbers by value, objects key by key.
func jsonEqual(a, b any) bool {
	a, b = normalize(a), normalize(b)
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, item := range x {
			other, ok := y[k]
			if !ok || !jsonEqual(item, other) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case nil, bool, float64, string:
		return a == b
	}
	return false
}

func show(v any) string {
	raw, err := json.Marshal(normalize(v))
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(raw)
}

func equal(what string, have, want any) error {
	if !jsonEqual(have, want) {
		return mismatch("%s is %s, expected %s", what, show(have), show(want))
	}
	return nil
}

// includes checks that each key of want is in have with an equal value.
func includes(what string, have map[string]any, want any) error {
	keys, err := object(what, want)
	if err != nil {
		return err
	}
	for _, key := range sortedKeys(keys) {
		item, ok := have[key]
		if !ok {
			return mismatch("%s lacks %q (has %s)", what, key, show(sortedKeys(have)))
		}
		if err := equal(fmt.Sprintf("%s[%q]", what, key), item, keys[key]); err != nil {
			return err
		}
	}
	return nil
}

// sameSet checks have against a list of strings as a set; have must hold no repeats.
func sameSet(what string, have []string, want any) error {
	list, ok := want.([]any)
	if !ok {
		return fmt.Errorf("%s: the expectation must be a list, not %s", what, show(want))
	}
	wanted := map[string]bool{}
	for _, item := range list {
		s, ok := item.(string)
		if !ok {
			return fmt.Errorf("%s: %s is not a string", what, show(item))
		}
		wanted[s] = true
	}
	got := map[string]bool{}
	for _, s := range have {
		got[s] = true
	}
	if len(got) != len(have) || !maps.Equal(got, wanted) {
		sorted := slices.Sorted(slices.Values(have))
		return mismatch("%s are %s, expected %s", what, show(sorted), show(slices.Sorted(maps.Keys(wanted))))
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func stringMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// orNil is nil for an empty string: what the other clients give for an unset field.
func orNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func intOrNil(n int) any {
	if n == 0 {
		return nil
	}
	return float64(n)
}

func asFloat(v any) (float64, error) {
	switch x := normalize(v).(type) {
	case float64:
		return x, nil
	}
	return 0, fmt.Errorf("%s is not a number", show(v))
}
