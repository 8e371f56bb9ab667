package v1alpha1

import (
	"fmt"
	"time"
)

// Duration is a Go duration string such as "90s", "10m" or "720h".
//
// It is a string rather than metav1.Duration on purpose: a value that does not parse (stored
// before a validation rule existed, or written around it) still decodes, so it cannot stop
// the operator's informers from syncing after a restart. The controller reports such a value
// on the object's status instead. Parse it with Parse.
//
// A field's CEL minimum is written `!self.matches(<the pattern>) || duration(self) >= ...`: on
// a value that does not match, duration() would fail to evaluate, and an evaluation error is
// not ratcheted, so an object stored before the rule could never be updated again (not even
// to remove its finalizer). The pattern itself reports such a value, and is ratcheted.
// At most 7 digits per component and 6 components keep every matching value within CEL's
// duration range.
// +kubebuilder:validation:Pattern=`^([0-9]{1,7}([.][0-9]{1,9})?(ns|us|ms|s|m|h)){1,6}$`
// +kubebuilder:validation:MaxLength=32
type Duration string

// Parse returns the duration, or an error naming the value when it is not a positive Go duration.
func (d Duration) Parse() (time.Duration, error) {
	v, err := time.ParseDuration(string(d))
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a positive duration (e.g. 90s, 10m, 720h)", string(d))
	}
	return v, nil
}

// DurationOf formats a time.Duration as a Duration.
func DurationOf(d time.Duration) *Duration {
	s := Duration(d.String())
	return &s
}

// Timestamp is an RFC 3339 date-time with an upper-case T and Z (or a numeric offset), e.g.
// "2030-01-01T00:00:00Z". Like Duration it is a string so that a malformed stored value
// decodes and is reported rather than stopping the informers.
// +kubebuilder:validation:Format=date-time
// +kubebuilder:validation:Pattern=`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$`
// +kubebuilder:validation:MaxLength=64
type Timestamp string

// Parse returns the time, or an error naming the value when it is not RFC 3339.
func (t Timestamp) Parse() (time.Time, error) {
	v, err := time.Parse(time.RFC3339Nano, string(t))
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 date-time (e.g. 2030-01-01T00:00:00Z)", string(t))
	}
	return v, nil
}

// TimestampOf formats a time as a Timestamp (UTC, seconds precision).
func TimestampOf(t time.Time) *Timestamp {
	s := Timestamp(t.UTC().Format(time.RFC3339))
	return &s
}
