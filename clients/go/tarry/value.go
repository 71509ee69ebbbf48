package tarry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"
)

// JSON numbers travel as doubles (google.protobuf.Value), which hold every integer up to
// 2^53 exactly. A larger one would arrive changed, so it is refused rather than rounded.
const maxExactInt = 1 << 53

// Nesting this deep is all but certainly a cycle (a map holding itself); the server refuses
// far less deep values anyway, with a field violation that names them.
const maxNesting = 1000

// ValueError is the refusal of a value that JSON cannot hold, before anything is sent:
// NaN or an infinity, an integer beyond 2^53, invalid UTF-8, a map with non-string keys,
// or a type with no JSON form (a channel, a func, a complex number...).
type ValueError struct {
	// Path locates the value: the argument's name, then .key and [index] steps
	// ("input.items[2]").
	Path string
	// Reason says what is wrong with it.
	Reason string
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("tarry: %s: %s", e.Path, e.Reason)
}

// ToValue converts plain JSON data to a google.protobuf.Value. It takes nil, bool, string,
// every integer and float type, json.Number, maps with string keys and slices or arrays of
// these (named types too), pointers to them, and any struct or json.Marshaler, which go
// through encoding/json. Anything else is refused with a *ValueError.
func ToValue(data any) (*structpb.Value, error) {
	return toValue(data, "value")
}

// toValue is ToValue with the path under which errors name the value ("input", "data").
func toValue(data any, path string) (*structpb.Value, error) {
	return convert(reflect.ValueOf(data), path, 0)
}

var (
	marshalerType = reflect.TypeFor[json.Marshaler]()
	numberType    = reflect.TypeFor[json.Number]()
)

func convert(v reflect.Value, path string, depth int) (*structpb.Value, error) {
	if depth > maxNesting {
		return nil, &ValueError{path, fmt.Sprintf("nested more than %d levels (a cycle?)", maxNesting)}
	}
	if !v.IsValid() {
		return structpb.NewNullValue(), nil
	}
	// json.Number is a string type that means a number, so it must come before strings.
	if v.Type() == numberType {
		return convertNumber(json.Number(v.String()), path)
	}
	if v.Type().Implements(marshalerType) && (v.Kind() != reflect.Pointer || !v.IsNil()) {
		return convertViaJSON(v, path, depth)
	}
	switch v.Kind() {
	case reflect.Interface, reflect.Pointer:
		if v.IsNil() {
			return structpb.NewNullValue(), nil
		}
		return convert(v.Elem(), path, depth)
	case reflect.Bool:
		return structpb.NewBoolValue(v.Bool()), nil
	case reflect.String:
		if !utf8.ValidString(v.String()) {
			return nil, &ValueError{path, "string is not valid UTF-8"}
		}
		return structpb.NewStringValue(v.String()), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n := v.Int()
		if n > maxExactInt || n < -maxExactInt {
			return nil, &ValueError{path, tooBig(n)}
		}
		return structpb.NewNumberValue(float64(n)), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n := v.Uint()
		if n > maxExactInt {
			return nil, &ValueError{path, tooBig(n)}
		}
		return structpb.NewNumberValue(float64(n)), nil
	case reflect.Float32, reflect.Float64:
		return convertFloat(v.Float(), path)
	case reflect.Map:
		return convertObject(v, path, depth)
	case reflect.Slice:
		if v.IsNil() {
			return structpb.NewNullValue(), nil // as encoding/json writes a nil slice
		}
		return convertArray(v, path, depth)
	case reflect.Array:
		return convertArray(v, path, depth)
	case reflect.Struct:
		return convertViaJSON(v, path, depth)
	}
	return nil, &ValueError{path, fmt.Sprintf("%s is not JSON data", v.Type())}
}

func tooBig(n any) string {
	return fmt.Sprintf("integer %v is beyond 2^53, which a JSON number (a double) cannot hold exactly; send it as a string", n)
}

func convertFloat(f float64, path string) (*structpb.Value, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, &ValueError{path, fmt.Sprintf("JSON has no %v", f)}
	}
	return structpb.NewNumberValue(f), nil
}

func convertNumber(n json.Number, path string) (*structpb.Value, error) {
	// An integer literal is held to the same 2^53 bound as an int64; one beyond int64
	// certainly exceeds it.
	if !strings.ContainsAny(string(n), ".eE") {
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err == nil {
			return convert(reflect.ValueOf(i), path, 0)
		}
		if errors.Is(err, strconv.ErrRange) {
			return nil, &ValueError{path, tooBig(n)}
		}
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return nil, &ValueError{path, fmt.Sprintf("%q is not a JSON number", string(n))}
	}
	return convertFloat(f, path) // out of range: an infinity, which it refuses
}

func convertObject(v reflect.Value, path string, depth int) (*structpb.Value, error) {
	if v.Type().Key().Kind() != reflect.String {
		return nil, &ValueError{path, fmt.Sprintf("JSON object keys must be strings, not %s", v.Type().Key())}
	}
	if v.IsNil() {
		return structpb.NewNullValue(), nil
	}
	fields := make(map[string]*structpb.Value, v.Len())
	iter := v.MapRange()
	for iter.Next() {
		key := iter.Key().String()
		if !utf8.ValidString(key) {
			return nil, &ValueError{path, fmt.Sprintf("key %q is not valid UTF-8", key)}
		}
		item, err := convert(iter.Value(), path+"."+key, depth+1)
		if err != nil {
			return nil, err
		}
		fields[key] = item
	}
	return structpb.NewStructValue(&structpb.Struct{Fields: fields}), nil
}

func convertArray(v reflect.Value, path string, depth int) (*structpb.Value, error) {
	values := make([]*structpb.Value, v.Len())
	for i := range values {
		item, err := convert(v.Index(i), fmt.Sprintf("%s[%d]", path, i), depth+1)
		if err != nil {
			return nil, err
		}
		values[i] = item
	}
	return structpb.NewListValue(&structpb.ListValue{Values: values}), nil
}

// viaJSON converts a struct or json.Marshaler the way encoding/json writes it, so that a
// caller's own types (with their `json` tags) can be sent as they are.
func convertViaJSON(v reflect.Value, path string, depth int) (*structpb.Value, error) {
	raw, err := json.Marshal(v.Interface())
	if err != nil {
		return nil, &ValueError{path, err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keeps integers exact, so the 2^53 check above still applies
	var plain any
	if err := dec.Decode(&plain); err != nil {
		return nil, &ValueError{path, err.Error()}
	}
	return convert(reflect.ValueOf(plain), path, depth)
}

// FromValue converts a google.protobuf.Value to plain JSON data as encoding/json decodes it
// into an `any`: nil, bool, float64, string, []any or map[string]any. An unset Value is nil.
func FromValue(v *structpb.Value) any {
	switch k := v.GetKind().(type) {
	case *structpb.Value_BoolValue:
		return k.BoolValue
	case *structpb.Value_NumberValue:
		return k.NumberValue
	case *structpb.Value_StringValue:
		return k.StringValue
	case *structpb.Value_StructValue:
		return FromStruct(k.StructValue)
	case *structpb.Value_ListValue:
		items := make([]any, len(k.ListValue.GetValues()))
		for i, item := range k.ListValue.GetValues() {
			items[i] = FromValue(item)
		}
		return items
	}
	return nil // null_value, or unset
}

// FromStruct converts a google.protobuf.Struct to a map; an unset Struct gives nil.
func FromStruct(s *structpb.Struct) map[string]any {
	if s == nil {
		return nil
	}
	fields := make(map[string]any, len(s.GetFields()))
	for key, item := range s.GetFields() {
		fields[key] = FromValue(item)
	}
	return fields
}

// Decode fills target (a pointer) from JSON data that the client returned, such as
// Execution.Result or Execution.State, through encoding/json:
//
//	var report struct{ Processed int `json:"processed"` }
//	err := tarry.Decode(ex.Result, &report)
func Decode(data any, target any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("tarry: decode: %w", err)
	}
	if err := json.Unmarshal(raw, target); err != nil {
		return fmt.Errorf("tarry: decode: %w", err)
	}
	return nil
}
