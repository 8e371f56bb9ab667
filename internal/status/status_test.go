package status

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// Truncate cuts on a rune boundary, so a condition message or Event never ends in half a character.
func TestTruncateKeepsUTF8(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly ten", 11, "exactly ten"},
		{"a longer message", 10, "a longe..."},
		{strings.Repeat("é", 10), 10, "ééé..."}, // a cut at byte 7 would split the fourth é
		{strings.Repeat("€", 10), 10, "€€..."},
		{"€€€€", 4, "..."},
	}
	for _, tt := range tests {
		got := Truncate(tt.in, tt.n)
		if got != tt.want || len(got) > tt.n || !utf8.ValidString(got) {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
