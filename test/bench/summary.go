package main

import (
	"fmt"
	"sort"
	"strings"
)

// targetRow is one performance target of DESIGN.md section 6 with what this run measured: the
// summary at the end of the output ("every performance target on one page") and the JSON's
// "targets".
type targetRow struct {
	Name     string  `json:"name"`
	Target   string  `json:"target"`
	Measured string  `json:"measured"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	// Reference is the floor the target is relative to, or what the figure is compared with,
	// measured in the same run.
	Reference string `json:"reference,omitempty"`
	// Met is nil for a row kept as information, with no target.
	Met *bool `json:"met,omitempty"`
}

// target records a row of the summary.
func (b *bench) target(name, target string, value float64, unit, measured, reference string, met bool) {
	b.res.Targets = append(b.res.Targets, targetRow{Name: name, Target: target, Measured: measured, Value: value, Unit: unit,
		Reference: reference, Met: &met})
}

// info records a row of the summary that has no target.
func (b *bench) info(name string, value float64, unit, measured, reference string) {
	b.res.Targets = append(b.res.Targets, targetRow{Name: name, Target: "(none)", Measured: measured, Value: value, Unit: unit, Reference: reference})
}

// order is DESIGN.md section 6's order of the targets, by a part of their row's name.
var order = []string{
	"revocation latency p50, ", "owners deleted at once", "namespace of", "while another target hangs", "rate-limited revocation",
	"provisioning ", "throughput / bare loop", "per new identity", "per revocation", "per steady-state sweep", "in a resync wave", "RSS",
}

func rank(name string) int {
	for i, part := range order {
		if strings.Contains(name, part) {
			return i
		}
	}
	return len(order)
}

// printSummary prints every target on one table, in DESIGN.md's order (the JSON's too).
func (b *bench) printSummary() {
	rows := b.res.Targets
	if len(rows) == 0 {
		return
	}
	sort.SliceStable(rows, func(i, j int) bool { return rank(rows[i].Name) < rank(rows[j].Name) })
	head := []string{"target (DESIGN.md section 6)", "target", "measured", "floor / reference (same run)", "met"}
	cells := make([][]string, 0, len(rows))
	for _, r := range rows {
		met := "-"
		if r.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*r.Met]
		}
		cells = append(cells, []string{r.Name, r.Target, r.Measured, r.Reference, met})
	}
	width := make([]int, len(head))
	for i, h := range head {
		width[i] = len(h)
	}
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], len(s))
		}
	}
	line := func(c []string) {
		parts := make([]string, len(c))
		for i, s := range c {
			parts[i] = s + strings.Repeat(" ", width[i]-len(s))
		}
		fmt.Println(strings.TrimRight(strings.Join(parts, " | "), " "))
	}
	met, total := 0, 0
	for _, r := range rows {
		if r.Met != nil {
			total++
			if *r.Met {
				met++
			}
		}
	}
	fmt.Printf("\nEvery performance target on one page (%d of %d met):\n\n", met, total)
	line(head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	fmt.Println(strings.Join(sep, "-+-"))
	for _, c := range cells {
		line(c)
	}
}
