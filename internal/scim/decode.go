package scim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxValues caps the JSON values (objects, arrays, strings, numbers, literals) of one
// response body. A body's bytes are capped too, but a body built of tiny values ({"a":0},...)
// costs some forty times its size once decoded into maps; 50,000 values (a page of 500 users
// of 100 values each) bound one decoded response to a few MiB.
const DefaultMaxValues = 50_000

// decodeGate bounds the response bodies decoded at once in this process, whichever target
// they come from: with the value cap it bounds the memory decoding can take at any moment
// (decoding takes milliseconds, so the gate costs nothing noticeable).
var decodeGate = make(chan struct{}, 4)

// decodeBounded counts the values of body (refusing more than maxValues, without building
// them) and then decodes it into v, holding a place in decodeGate.
func decodeBounded(body []byte, maxValues int, v any) error {
	if err := countValues(body, maxValues); err != nil {
		return err
	}
	decodeGate <- struct{}{}
	defer func() { <-decodeGate }()
	return json.Unmarshal(body, v)
}

// countValues refuses a body with more than maxValues JSON values (object keys count too); a
// body that is not JSON is left for the decoder to report.
func countValues(body []byte, maxValues int) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	n := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return nil // malformed: json.Unmarshal says how
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			continue // the value was counted at its opening
		}
		if n++; n > maxValues {
			return fmt.Errorf("%w: the response holds more than %d JSON values", ErrLimitExceeded, maxValues)
		}
	}
}
