// Command mdlinks checks the links of the repository's Markdown files: a relative link must
// name a file or directory of the repository (never one outside it) and, with a #fragment, a
// heading of that file (GitHub's anchors). `make verify` runs it on `git ls-files '*.md'`.
//
// Usage: go run ./hack/mdlinks FILE.md...
package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
)

var (
	// inlineLink is [text](target) or ![alt](target), target up to a space or ")".
	inlineLink = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	// refLink is a reference definition: [name]: target
	refLink = regexp.MustCompile(`^\s*\[[^\]]+\]:\s*(\S+)`)
	heading = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
	fence   = regexp.MustCompile("^\\s*(```|~~~)")
)

func main() {
	root, err := filepath.Abs(".")
	if err != nil {
		fail(err)
	}
	var problems []string
	anchors := map[string]map[string]bool{}
	for _, f := range os.Args[1:] {
		links, err := readLinks(f)
		if err != nil {
			fail(err)
		}
		for _, l := range links {
			if p := check(root, f, l, anchors); p != "" {
				problems = append(problems, fmt.Sprintf("%s:%d: %s: %s", f, l.line, l.target, p))
			}
		}
	}
	for _, p := range problems {
		fmt.Fprintln(os.Stderr, p)
	}
	if len(problems) > 0 {
		fail(fmt.Errorf("%d broken links", len(problems)))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "mdlinks:", err)
	os.Exit(1)
}

type link struct {
	target string
	line   int
}

// readLinks returns the links of a Markdown file outside code blocks and code spans.
func readLinks(path string) ([]link, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var links []link
	inFence := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if fence.MatchString(line) {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		line = stripCodeSpans(line)
		for _, m := range inlineLink.FindAllStringSubmatch(line, -1) {
			links = append(links, link{target: m[1], line: n})
		}
		if m := refLink.FindStringSubmatch(line); m != nil {
			links = append(links, link{target: m[1], line: n})
		}
	}
	return links, sc.Err()
}

func stripCodeSpans(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		if r == '`' {
			in = !in
			continue
		}
		if !in {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// check returns what is wrong with a link of file, or "".
func check(root, file string, l link, anchors map[string]map[string]bool) string {
	t := l.target
	if strings.Contains(t, "://") || strings.HasPrefix(t, "mailto:") {
		return "" // a page of the web (a provider's documentation, an RFC)
	}
	path, frag, _ := strings.Cut(t, "#")
	target := file
	if path != "" {
		target = filepath.Join(filepath.Dir(file), path)
		abs, err := filepath.Abs(target)
		if err != nil {
			return err.Error()
		}
		if abs != root && !strings.HasPrefix(abs, root+string(filepath.Separator)) {
			return "leaves the repository"
		}
		if _, err := os.Stat(target); err != nil {
			return "no such file"
		}
	}
	if frag == "" || !strings.HasSuffix(target, ".md") {
		return ""
	}
	if anchors[target] == nil {
		a, err := headingAnchors(target)
		if err != nil {
			return err.Error()
		}
		anchors[target] = a
	}
	if !anchors[target][frag] {
		return "no heading #" + frag + " in " + target
	}
	return ""
}

// headingAnchors are the anchors GitHub gives a file's headings: lower case, punctuation
// dropped, spaces as hyphens, a -N suffix on repeats.
func headingAnchors(path string) (map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	count := map[string]int{}
	inFence := false
	for _, line := range strings.Split(string(data), "\n") {
		if fence.MatchString(line) {
			inFence = !inFence
			continue
		}
		m := heading.FindStringSubmatch(line)
		if inFence || m == nil {
			continue
		}
		a := slug(m[1])
		if n := count[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		count[a]++
	}
	return out, nil
}

func slug(h string) string {
	h = stripCodeSpans(regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`).ReplaceAllString(h, "$1"))
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}
