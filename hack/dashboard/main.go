// Command dashboard renders the main panels of the Grafana dashboard
// (config/grafana/scim-operator.json) as one PNG, from the metric samples a bench run recorded
// (`go run ./test/bench -metrics-series FILE`): the samples go into a Prometheus TSDB in a
// temporary folder, and each panel's own PromQL queries run on it with Prometheus' engine over
// the whole run, as Grafana would ask Prometheus. `make dashboard-png` runs both steps.
//
// It is a module of its own so that the operator's go.mod does not carry Prometheus' server
// and a plotting library.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"math"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/tsdb"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// seriesFile is what test/bench writes with -metrics-series.
type seriesFile struct {
	Source         string `json:"source"`
	ScrapeInterval string `json:"scrapeInterval"`
	StartMs        int64  `json:"startMs"`
	EndMs          int64  `json:"endMs"`
	Phases         []struct {
		Name  string `json:"name"`
		Start int64  `json:"startMs"`
	} `json:"phases"`
	Series []struct {
		Labels map[string]string `json:"labels"`
		Points [][2]float64      `json:"points"`
	} `json:"series"`
	BenchParameters map[string]any `json:"benchParameters"`
}

// dashboard is the part of Grafana's JSON model this program reads.
type dashboard struct {
	Panels []struct {
		Title       string `json:"title"`
		Type        string `json:"type"`
		FieldConfig struct {
			Defaults struct {
				Unit string `json:"unit"`
			} `json:"defaults"`
		} `json:"fieldConfig"`
		Targets []struct {
			Expr         string `json:"expr"`
			LegendFormat string `json:"legendFormat"`
		} `json:"targets"`
	} `json:"panels"`
}

func main() {
	seriesPath := flag.String("series", "bench-series.json", "samples recorded by test/bench -metrics-series")
	dashPath := flag.String("dashboard", "config/grafana/scim-operator.json", "Grafana dashboard")
	out := flag.String("out", "docs/dashboard.png", "PNG to write")
	panels := flag.String("panels", "Revocation latency,Revocations and deprovision backlog,SCIM requests by code,Identities by state,SCIM request latency p99,Oldest pending deprovisioning",
		"titles of the panels to render, comma-separated, in reading order (two per row)")
	rateInterval := flag.Duration("rate-interval", 5*time.Second, "what $__rate_interval stands for (the bench runs minutes, not hours)")
	step := flag.Duration("step", time.Second, "query resolution")
	flag.Parse()
	if err := run(*seriesPath, *dashPath, *out, strings.Split(*panels, ","), *rateInterval, *step); err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}

func run(seriesPath, dashPath, out string, titles []string, rateInterval, step time.Duration) error {
	var sf seriesFile
	if err := readJSON(seriesPath, &sf); err != nil {
		return err
	}
	var dash dashboard
	if err := readJSON(dashPath, &dash); err != nil {
		return err
	}

	dir, err := os.MkdirTemp("", "scim-dashboard-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	db, err := tsdb.Open(dir, nil, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		return err
	}
	defer func() { _ = db.Close() }()
	ctx := context.Background()
	app := db.Appender(ctx)
	samples := 0
	for _, s := range sf.Series {
		lbls := labels.FromMap(s.Labels)
		for _, p := range s.Points {
			if _, err := app.Append(0, lbls, int64(p[0]), p[1]); err != nil {
				return fmt.Errorf("appending %s: %w", lbls, err)
			}
			samples++
		}
	}
	if err := app.Commit(); err != nil {
		return err
	}
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Second})
	start, end := time.UnixMilli(sf.StartMs), time.UnixMilli(sf.EndMs)
	fmt.Printf("dashboard: %d series, %d samples, %s of bench run\n", len(sf.Series), samples, end.Sub(start).Round(time.Second))

	var plots []*plot.Plot
	for _, title := range titles {
		title = strings.TrimSpace(title)
		found := false
		for _, p := range dash.Panels {
			if p.Title != title {
				continue
			}
			found = true
			pl := plot.New()
			pl.Title.Text = title
			pl.X.Label.Text = "seconds since the operator started"
			pl.Y.Label.Text = unitLabel(p.FieldConfig.Defaults.Unit)
			pl.Legend.Top = true
			pl.Legend.Left = true
			pl.Legend.YOffs = -vg.Points(4)
			pl.Legend.XOffs = vg.Points(14)
			pl.Add(plotter.NewGrid())
			lines := 0
			minX, maxX, maxY := math.Inf(1), math.Inf(-1), 0.0
			for _, t := range p.Targets {
				expr := strings.NewReplacer("$__rate_interval", promDuration(rateInterval), "$__interval", promDuration(step)).Replace(t.Expr)
				q, err := engine.NewRangeQuery(ctx, db, nil, expr, start, end, step)
				if err != nil {
					return fmt.Errorf("panel %q: %w", title, err)
				}
				res := q.Exec(ctx)
				if res.Err != nil {
					return fmt.Errorf("panel %q, %s: %w", title, expr, res.Err)
				}
				matrix, err := res.Matrix()
				if err != nil {
					return err
				}
				sort.Slice(matrix, func(i, j int) bool {
					return legend(t.LegendFormat, matrix[i].Metric) < legend(t.LegendFormat, matrix[j].Metric)
				})
				for _, s := range matrix {
					// One line per stretch of data: no line drawn across a gap.
					var segments []plotter.XYs
					var last int64
					for _, f := range s.Floats {
						if math.IsNaN(f.F) || math.IsInf(f.F, 0) {
							continue
						}
						if len(segments) == 0 || f.T-last > 2*step.Milliseconds() {
							segments = append(segments, plotter.XYs{})
						}
						last = f.T
						x := float64(f.T-sf.StartMs) / 1000
						segments[len(segments)-1] = append(segments[len(segments)-1], plotter.XY{X: x, Y: f.F})
						minX, maxX, maxY = math.Min(minX, x), math.Max(maxX, x), math.Max(maxY, f.F)
					}
					if len(segments) == 0 {
						continue
					}
					for i, xy := range segments {
						l, err := plotter.NewLine(xy)
						if err != nil {
							return err
						}
						l.Color = palette[lines%len(palette)]
						l.Width = vg.Points(1.2)
						pl.Add(l)
						if i == 0 {
							pl.Legend.Add(legend(t.LegendFormat, s.Metric), l)
						}
					}
					lines++
				}
				q.Close()
			}
			runSeconds := float64(sf.EndMs-sf.StartMs) / 1000
			pl.X.Min, pl.X.Max = 0, runSeconds
			switch {
			case lines == 0:
				pl.Title.Text += " (no data in this run)"
			case maxX-minX < runSeconds/4:
				// Data in one short phase only (revocation): zoom on it.
				pad := math.Max(2, (maxX-minX)/4)
				pl.X.Min, pl.X.Max = math.Max(0, minX-pad), math.Min(runSeconds, maxX+pad)
				pl.Title.Text += fmt.Sprintf(" (zoom: %.0f-%.0f s)", pl.X.Min, pl.X.Max)
			}
			pl.Y.Min = 0
			// Room above the data for the legend.
			pl.Y.Max = math.Max(maxY, 1e-9) * (1.15 + 0.09*float64(lines))
			addPhases(pl, sf)
			plots = append(plots, pl)
		}
		if !found {
			return fmt.Errorf("no panel titled %q in %s", title, dashPath)
		}
	}

	const cols = 2
	rows := (len(plots) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for i := range grid {
		grid[i] = make([]*plot.Plot, cols)
	}
	for i, p := range plots {
		grid[i/cols][i%cols] = p
	}
	width, rowHeight, header := 15*vg.Inch, 3.6*vg.Inch, 0.9*vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(width, vg.Length(rows)*rowHeight+header), vgimg.UseDPI(96))
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Path())
	caption(dc, sf)
	body := dc
	body.Max.Y -= header
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 6, PadY: vg.Millimeter * 6,
		PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 3, PadLeft: vg.Millimeter * 3, PadRight: vg.Millimeter * 4}
	canvases := plot.Align(grid, tiles, body)
	for i := range grid {
		for j, p := range grid[i] {
			if p != nil {
				p.Draw(canvases[i][j])
			}
		}
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	info, err := os.Stat(out)
	if err != nil {
		return err
	}
	fmt.Printf("dashboard: %d panels -> %s (%d KB)\n", len(plots), out, info.Size()/1024)
	return nil
}

// caption writes what the picture shows and where it came from.
func caption(dc draw.Canvas, sf seriesFile) {
	font := plot.DefaultFont
	font.Size = vg.Points(13)
	small := font
	small.Size = vg.Points(10)
	sty := draw.TextStyle{Color: color.Black, Font: font, Handler: plot.DefaultTextHandler}
	y := dc.Max.Y - vg.Points(18)
	dc.FillText(sty, vg.Point{X: dc.Min.X + vg.Millimeter*4, Y: y},
		"scim-operator dashboard (config/grafana/scim-operator.json), its queries evaluated on a real `make bench` run")
	var params []string
	for _, k := range []string{"n", "memoryN", "concurrency", "scimLatency", "admissionPolicy"} {
		if v, ok := sf.BenchParameters[k]; ok {
			params = append(params, fmt.Sprintf("%s=%v", k, v))
		}
	}
	var phases []string
	for _, p := range runPhases(sf) {
		phases = append(phases, fmt.Sprintf("[%d] %s at %.0f s", len(phases)+1, shorten(p.Name), float64(p.Start-sf.StartMs)/1000))
	}
	sty.Font = small
	dc.FillText(sty, vg.Point{X: dc.Min.X + vg.Millimeter*4, Y: y - vg.Points(16)},
		fmt.Sprintf("%s, %s: %s; scraped every %s; x: seconds since the operator started", sf.Source,
			time.UnixMilli(sf.StartMs).UTC().Format("2006-01-02 15:04 UTC"), strings.Join(params, " "), sf.ScrapeInterval))
	dc.FillText(sty, vg.Point{X: dc.Min.X + vg.Millimeter*4, Y: y - vg.Points(30)},
		"dotted lines, bench phases: "+strings.Join(phases, "; "))
}

// runPhases are the bench phases that began after the operator started (the recording's start).
func runPhases(sf seriesFile) []phase {
	var out []phase
	for _, p := range sf.Phases {
		if p.Start >= sf.StartMs {
			out = append(out, phase{Name: p.Name, Start: p.Start})
		}
	}
	return out
}

type phase struct {
	Name  string
	Start int64
}

// addPhases draws a dotted vertical line at the start of each bench phase, numbered as in the caption.
func addPhases(pl *plot.Plot, sf seriesFile) {
	for i, p := range runPhases(sf) {
		x := float64(p.Start-sf.StartMs) / 1000
		if x >= pl.X.Min && x <= pl.X.Max {
			pl.Add(phaseLine{x: x, label: fmt.Sprint(i + 1)})
		}
	}
}

// phaseLine is a dotted vertical line across the plot, labelled at the top.
type phaseLine struct {
	x     float64
	label string
}

func (l phaseLine) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	x := trX(l.x)
	c.StrokeLines(draw.LineStyle{Color: color.Gray{Y: 140}, Width: vg.Points(0.8), Dashes: []vg.Length{vg.Points(2), vg.Points(3)}},
		[]vg.Point{{X: x, Y: c.Min.Y}, {X: x, Y: c.Max.Y}})
	font := plot.DefaultFont
	font.Size = vg.Points(8)
	c.FillText(draw.TextStyle{Color: color.Gray{Y: 90}, Font: font, Handler: plot.DefaultTextHandler, XAlign: draw.XCenter, YAlign: draw.YTop},
		vg.Point{X: x, Y: c.Max.Y}, l.label)
}

func shorten(s string) string {
	if i := strings.IndexAny(s, "(:"); i > 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

var legendLabel = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// legend fills a Grafana legendFormat ("{{target}} {{code}}") from a series' labels.
func legend(format string, m labels.Labels) string {
	if format == "" {
		return m.String()
	}
	return legendLabel.ReplaceAllStringFunc(format, func(s string) string {
		return m.Get(legendLabel.FindStringSubmatch(s)[1])
	})
}

func unitLabel(unit string) string {
	switch unit {
	case "s":
		return "seconds"
	case "reqps":
		return "requests/s"
	}
	return ""
}

func promDuration(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff}, color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x94, G: 0x67, B: 0xbd, A: 0xff}, color.RGBA{R: 0x8c, G: 0x56, B: 0x4b, A: 0xff},
	color.RGBA{R: 0xe3, G: 0x77, B: 0xc2, A: 0xff}, color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff},
}
