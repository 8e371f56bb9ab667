package scim

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxProviderText bounds the provider's scimType/detail and transport error text kept in an
// error: enough for any useful explanation, small enough for a condition message and an Event.
const maxProviderText = 256

// maxScimType bounds scimType, a keyword such as "uniqueness" or "invalidValue".
const maxScimType = 64

// ellipsis marks a cut.
const ellipsis = "..."

// Sanitize makes text that came from a SCIM provider (an error detail, a userName) safe to show
// in logs, Events and status conditions: invalid UTF-8 becomes U+FFFD, tabs and line breaks
// become spaces, other control characters and bidirectional overrides (which can make a
// message read differently from what it says) are removed, and the result is at most maxBytes
// bytes, cut on a rune boundary and ending in "..." when cut. maxBytes <= 0 means no limit.
func Sanitize(s string, maxBytes int) string {
	if maxBytes > 0 && maxBytes < len(ellipsis) {
		maxBytes = len(ellipsis)
	}
	var b strings.Builder
	if maxBytes > 0 {
		b.Grow(min(len(s), maxBytes+utf8.UTFMax))
	} else {
		b.Grow(len(s))
	}
	// Ranging over a string yields utf8.RuneError for each invalid byte.
	for _, r := range s {
		switch {
		case r == '\t' || r == '\n' || r == '\r' || r == '\u2028' || r == '\u2029':
			r = ' '
		case unicode.IsControl(r) || isBidiControl(r):
			continue
		}
		b.WriteRune(r)
		if maxBytes > 0 && b.Len() > maxBytes {
			break // it will be cut: the rest cannot matter
		}
	}
	out := b.String()
	if maxBytes <= 0 || len(out) <= maxBytes {
		return out
	}
	cut := maxBytes - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return out[:cut] + ellipsis
}

// isBidiControl reports the Unicode bidirectional embedding, override and isolate controls.
func isBidiControl(r rune) bool {
	return (r >= '\u202A' && r <= '\u202E') || (r >= '\u2066' && r <= '\u2069') || r == '\u200E' || r == '\u200F' || r == '\u061C'
}
