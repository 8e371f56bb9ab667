package plugin

import (
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"github.com/nhi-dev/scim-operator/internal/scim"
)

// clean makes text read from the cluster (messages written by the operator, a target's
// provider or anyone who can create Events) safe to print on a terminal: no control characters
// or escape sequences, no bidirectional overrides, one line, at most maxBytes bytes.
func clean(s string, maxBytes int) string {
	return scim.Sanitize(s, maxBytes)
}

// cell guards a CSV cell against formula injection: a spreadsheet runs a cell that starts
// with =, +, -, @ (or a tab or carriage return before one), so such a cell is prefixed with a
// single quote (OWASP's recommendation). The text is cleaned first.
func cell(s string) string {
	s = clean(s, 0)
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// rfc3339 formats a time in UTC, "" for none.
func rfc3339(t *metav1.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// relative says how far t is from now: "in 3d", "5m ago".
func relative(t, now time.Time) string {
	if t.After(now) {
		return "in " + duration.HumanDuration(t.Sub(now))
	}
	return duration.HumanDuration(now.Sub(t)) + " ago"
}

// age is the kubectl-style age of t ("5m"), "<unknown>" for none.
func age(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(now.Sub(t))
}

// orDash shows "-" for an empty cell of a table.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
