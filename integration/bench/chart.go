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
	colorBG       = color.RGBA{255, 255, 255, 255}
	colorAxis     = color.RGBA{60, 60, 60, 255}
	colorGrid     = color.RGBA{225, 225, 225, 255}
	colorCtha     = color.RGBA{31, 119, 180, 255} // blue
	colorBaseline = color.RGBA{255, 127, 14, 255} // orange
)

const (
	plotWidth = 640
	rowHeight = 44
	topMargin = 64
	botMargin = 50
	dotRadius = 4
	fontScale = 2
)

// gapRow is one case's longest-gap samples.
type gapRow struct {
	name           string
	ctha, baseline []float64
}

// gapRows returns, for every case with a Gap metric, its samples.
func (r *Run) gapRows() []gapRow {
	var rows []gapRow
	for _, c := range r.Cases {
		for _, m := range c.Metrics {
			if m.Gap {
				rows = append(rows, gapRow{name: c.Scenario + " " + c.Name, ctha: m.Samples[Ctha], baseline: m.Samples[Baseline]})
			}
		}
	}
	return rows
}

// GapChart draws the longest-gap distribution of both stacks, one row per
// case (a dot per round, a bar at the median), as a PNG. It returns an
// error if no case has a gap metric.
func (r *Run) GapChart() ([]byte, error) {
	rows := r.gapRows()
	if len(rows) == 0 {
		return nil, fmt.Errorf("gap chart: no case has a longest-gap figure")
	}
	maxV := 1.0
	for _, row := range rows {
		for _, v := range append(append([]float64{}, row.ctha...), row.baseline...) {
			maxV = math.Max(maxV, v)
		}
	}
	axisMax := math.Ceil(maxV) // whole seconds
	labelWidth := 0
	for _, row := range rows {
		labelWidth = max(labelWidth, textWidth(row.name)+30)
	}
	width := labelWidth + plotWidth + 30
	h := topMargin + len(rows)*rowHeight + botMargin
	img := image.NewRGBA(image.Rect(0, 0, width, h))
	fill(img, img.Bounds(), colorBG)
	plotL, plotR := labelWidth, labelWidth+plotWidth
	x := func(v float64) int { return plotL + int(math.Round(v/axisMax*float64(plotR-plotL))) }

	drawText(img, 10, 12, "LONGEST APPLICATION GAP (S), 200 LIVE TCP FLOWS", colorAxis)
	fill(img, image.Rect(10, 32, 22, 44), colorCtha)
	drawText(img, 28, 34, "CTHA", colorAxis)
	fill(img, image.Rect(90, 32, 102, 44), colorBaseline)
	drawText(img, 108, 34, "KEEPALIVED + CONNTRACKD", colorAxis)

	bottom := topMargin + len(rows)*rowHeight
	for s := 0.0; s <= axisMax; s++ {
		xx := x(s)
		fill(img, image.Rect(xx, topMargin, xx+1, bottom), colorGrid)
		label := fmt.Sprintf("%.0f", s)
		drawText(img, xx-textWidth(label)/2, bottom+10, label, colorAxis)
	}
	drawText(img, (plotL+plotR)/2-textWidth("SECONDS")/2, bottom+28, "SECONDS", colorAxis)
	fill(img, image.Rect(plotL, bottom, plotR+1, bottom+1), colorAxis)

	for i, row := range rows {
		y0 := topMargin + i*rowHeight
		mid := y0 + rowHeight/2
		fill(img, image.Rect(plotL, mid, plotR+1, mid+1), colorGrid)
		drawText(img, 10, mid-5, strings.ToUpper(row.name), colorAxis)
		for _, s := range []struct {
			v []float64
			c color.RGBA
			y int
		}{{row.ctha, colorCtha, mid - 9}, {row.baseline, colorBaseline, mid + 9}} {
			for _, v := range s.v {
				dot(img, x(v), s.y, dotRadius, s.c)
			}
			if sum := Summarize(s.v); sum.N > 0 {
				xm := x(sum.Median)
				fill(img, image.Rect(xm-1, s.y-8, xm+2, s.y+9), s.c)
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
