package bench

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"strings"
)

// Chart colours.
var (
	colorBG   = color.RGBA{255, 255, 255, 255}
	colorAxis = color.RGBA{60, 60, 60, 255}
	colorGrid = color.RGBA{225, 225, 225, 255}
	// stackColors has one colour per stack of Stacks.
	stackColors = map[string]color.RGBA{
		Ctha:       {31, 119, 180, 255},  // blue
		CthaRT:     {44, 160, 44, 255},   // green
		Baseline:   {255, 127, 14, 255},  // orange
		Direct:     {148, 103, 189, 255}, // purple
		Best:       {214, 39, 40, 255},   // red
		Keepalived: {140, 86, 75, 255},   // brown
	}
)

const (
	plotWidth = 640
	laneGap   = 18 // between the stacks' lanes of a row
	topMargin = 64
	botMargin = 50
	dotRadius = 4
	fontScale = 2
)

// gapRow is one case's longest-gap samples, by stack.
type gapRow struct {
	name    string
	samples map[string][]float64
}

// gapRows returns, for every case with a Gap metric, its samples, and
// the stacks with samples in any of them, in Stacks' order.
func (r *Run) gapRows() ([]gapRow, []string) {
	var rows []gapRow
	seen := map[string]bool{}
	for _, c := range r.Cases {
		for _, m := range c.Metrics {
			if m.Gap {
				rows = append(rows, gapRow{name: c.Scenario + " " + c.Name, samples: inSeconds(m)})
				for id, v := range m.Samples {
					seen[id] = seen[id] || len(v) > 0
				}
			}
		}
	}
	var stacks []string
	for _, s := range Stacks {
		if seen[s.ID] {
			stacks = append(stacks, s.ID)
		}
	}
	return rows, stacks
}

// inSeconds returns m's samples in seconds, the chart's unit (the short
// adverts' gaps are in milliseconds).
func inSeconds(m *Metric) map[string][]float64 {
	if m.Unit != "ms" {
		return m.Samples
	}
	out := make(map[string][]float64, len(m.Samples))
	for id, v := range m.Samples {
		for _, x := range v {
			out[id] = append(out[id], x/1000)
		}
	}
	return out
}

// rowHeight is the height of a row with n stacks' lanes.
func rowHeight(n int) int { return max(44, n*laneGap+8) }

// GapChart draws the longest-gap distribution of every stack, one row per
// case and a lane per stack in it (a dot per round, a bar at the
// median), one colour per stack with a legend, as a PNG. It returns an
// error if no case has a gap metric.
func (r *Run) GapChart() ([]byte, error) {
	rows, stacks := r.gapRows()
	if len(rows) == 0 {
		return nil, fmt.Errorf("gap chart: no case has a longest-gap figure")
	}
	maxV := 1.0
	for _, row := range rows {
		for _, v := range row.samples {
			for _, x := range v {
				maxV = math.Max(maxV, x)
			}
		}
	}
	axisMax := math.Ceil(maxV) // whole seconds
	labelWidth := 0
	for _, row := range rows {
		labelWidth = max(labelWidth, textWidth(row.name)+30)
	}
	legendWidth := 10
	for _, s := range stacks {
		legendWidth += 18 + textWidth(s) + 24
	}
	rh := rowHeight(len(stacks))
	width := max(labelWidth+plotWidth+30, legendWidth)
	h := topMargin + len(rows)*rh + botMargin
	img := image.NewRGBA(image.Rect(0, 0, width, h))
	fill(img, img.Bounds(), colorBG)
	plotL, plotR := labelWidth, labelWidth+plotWidth
	x := func(v float64) int { return plotL + int(math.Round(v/axisMax*float64(plotR-plotL))) }

	drawText(img, 10, 12, "LONGEST APPLICATION GAP (S), 200 LIVE TCP FLOWS", colorAxis)
	lx := 10
	for _, s := range stacks {
		fill(img, image.Rect(lx, 32, lx+12, 44), stackColors[s])
		drawText(img, lx+18, 34, s, colorAxis)
		lx += 18 + textWidth(s) + 24
	}

	bottom := topMargin + len(rows)*rh
	for s := 0.0; s <= axisMax; s++ {
		xx := x(s)
		fill(img, image.Rect(xx, topMargin, xx+1, bottom), colorGrid)
		label := fmt.Sprintf("%.0f", s)
		drawText(img, xx-textWidth(label)/2, bottom+10, label, colorAxis)
	}
	drawText(img, (plotL+plotR)/2-textWidth("SECONDS")/2, bottom+28, "SECONDS", colorAxis)
	fill(img, image.Rect(plotL, bottom, plotR+1, bottom+1), colorAxis)

	for i, row := range rows {
		y0 := topMargin + i*rh
		mid := y0 + rh/2
		fill(img, image.Rect(plotL, mid, plotR+1, mid+1), colorGrid)
		drawText(img, 10, mid-5, strings.ToUpper(row.name), colorAxis)
		for j, s := range stacks {
			// Lanes laneGap apart, centred on the row's line.
			y := mid + (2*j-(len(stacks)-1))*laneGap/2
			c := stackColors[s]
			for _, v := range row.samples[s] {
				dot(img, x(v), y, dotRadius, c)
			}
			if sum := Summarize(row.samples[s]); sum.N > 0 {
				xm := x(sum.Median)
				fill(img, image.Rect(xm-1, y-8, xm+2, y+9), c)
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("gap chart: %w", err)
	}
	return buf.Bytes(), nil
}

func fill(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

func dot(img *image.RGBA, cx, cy, r int, c color.RGBA) {
	for y := -r; y <= r; y++ {
		for x := -r; x <= r; x++ {
			if x*x+y*y <= r*r && image.Pt(cx+x, cy+y).In(img.Bounds()) {
				img.SetRGBA(cx+x, cy+y, c)
			}
		}
	}
}

// textWidth is the width in pixels of s drawn by drawText.
func textWidth(s string) int { return len(s) * 4 * fontScale }

// drawText draws s (upper case, digits and a few signs; anything else
// as a space) with its top-left corner at x, y.
func drawText(img *image.RGBA, x, y int, s string, c color.RGBA) {
	for i, r := range strings.ToUpper(s) {
		g, ok := glyphs[r]
		if !ok {
			continue
		}
		for row, bits := range g {
			for col, b := range bits {
				if b == '#' {
					px, py := x+(i*4+col)*fontScale, y+row*fontScale
					fill(img, image.Rect(px, py, px+fontScale, py+fontScale), c)
				}
			}
		}
	}
}

// glyphs is a 3x5 pixel font.
var glyphs = map[rune][5]string{
	'A': {".#.", "#.#", "###", "#.#", "#.#"}, 'B': {"##.", "#.#", "##.", "#.#", "##."},
	'C': {".##", "#..", "#..", "#..", ".##"}, 'D': {"##.", "#.#", "#.#", "#.#", "##."},
	'E': {"###", "#..", "##.", "#..", "###"}, 'F': {"###", "#..", "##.", "#..", "#.."},
	'G': {".##", "#..", "#.#", "#.#", ".##"}, 'H': {"#.#", "#.#", "###", "#.#", "#.#"},
	'I': {"###", ".#.", ".#.", ".#.", "###"}, 'J': {"..#", "..#", "..#", "#.#", ".#."},
	'K': {"#.#", "#.#", "##.", "#.#", "#.#"}, 'L': {"#..", "#..", "#..", "#..", "###"},
	'M': {"#.#", "###", "###", "#.#", "#.#"}, 'N': {"##.", "#.#", "#.#", "#.#", "#.#"},
	'O': {".#.", "#.#", "#.#", "#.#", ".#."}, 'P': {"##.", "#.#", "##.", "#..", "#.."},
	'Q': {".#.", "#.#", "#.#", "##.", ".##"}, 'R': {"##.", "#.#", "##.", "#.#", "#.#"},
	'S': {".##", "#..", ".#.", "..#", "##."}, 'T': {"###", ".#.", ".#.", ".#.", ".#."},
	'U': {"#.#", "#.#", "#.#", "#.#", "###"}, 'V': {"#.#", "#.#", "#.#", "#.#", ".#."},
	'W': {"#.#", "#.#", "###", "###", "#.#"}, 'X': {"#.#", "#.#", ".#.", "#.#", "#.#"},
	'Y': {"#.#", "#.#", ".#.", ".#.", ".#."}, 'Z': {"###", "..#", ".#.", "#..", "###"},
	'0': {"###", "#.#", "#.#", "#.#", "###"}, '1': {".#.", "##.", ".#.", ".#.", "###"},
	'2': {"##.", "..#", ".#.", "#..", "###"}, '3': {"##.", "..#", ".#.", "..#", "##."},
	'4': {"#.#", "#.#", "###", "..#", "..#"}, '5': {"###", "#..", "##.", "..#", "##."},
	'6': {".##", "#..", "###", "#.#", "###"}, '7': {"###", "..#", ".#.", ".#.", ".#."},
	'8': {"###", "#.#", "###", "#.#", "###"}, '9': {"###", "#.#", "###", "..#", "##."},
	'.': {"...", "...", "...", "...", ".#."}, ',': {"...", "...", "...", ".#.", "#.."},
	'+': {"...", ".#.", "###", ".#.", "..."}, '-': {"...", "...", "###", "...", "..."},
	'(': {"..#", ".#.", ".#.", ".#.", "..#"}, ')': {"#..", ".#.", ".#.", ".#.", "#.."},
	'/': {"..#", "..#", ".#.", "#..", "#.."}, ':': {"...", ".#.", "...", ".#.", "..."},
	'=': {"...", "###", "...", "###", "..."},
}
