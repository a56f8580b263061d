package browsertest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/closewait/closewait/internal/agent"
	"github.com/closewait/closewait/internal/cwtest"
	"github.com/closewait/closewait/internal/diagnose"
)

func TestMain(m *testing.M) { cwtest.Main(m) }

// chromium is the Debian package's browser (apt-get install chromium chromium-driver).
const chromium = "/usr/bin/chromium"

// artifactDir is $CLOSEWAIT_ARTIFACTS, or a new temporary directory that
// outlives the test (its path is logged).
func artifactDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("CLOSEWAIT_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d, err := os.MkdirTemp("", "closewait-artifacts-")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// save writes a screenshot as an artefact, whatever the test found.
func save(t *testing.T, name string, png []byte) {
	t.Helper()
	if len(png) == 0 {
		return
	}
	p := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Errorf("save screenshot: %v", err)
		return
	}
	t.Logf("screenshot: %s", p)
}

// newAgent makes an agent with the default thresholds whose scans the test drives.
func newAgent(t *testing.T) *agent.Agent {
	t.Helper()
	a, err := agent.New(agent.Options{Thresholds: diagnose.DefaultThresholds, Interval: time.Minute, TopN: 1000, Version: "browsertest"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// serve starts the agent's real server on 127.0.0.1:0 and returns its base URL.
func serve(t *testing.T, a *agent.Agent) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := agent.NewServer(a.Handler())
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func scan(t *testing.T, a *agent.Agent) {
	t.Helper()
	if err := a.Scan(); err != nil {
		t.Fatalf("scan: %v", err)
	}
}

// needChromium skips the test without the browser.
func needChromium(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("needs Chromium at %s (apt-get install chromium chromium-driver): %v", chromium, err)
	}
}

// browser starts headless Chromium with a window of the given size; it is
// ended when the test ends.
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	needChromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(width, height),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancel(); cancelTab(); cancelAlloc() })
	return ctx
}

var utcTick = regexp.MustCompile(`^\d\d:\d\d(:\d\d)?$`)

// TestDashboardInBrowser loads the dashboard in headless Chromium: the
// leaking holder is listed with its count, its uPlot chart is drawn from
// /api/v1/history (a canvas with painted pixels, the series ending at the
// current count) on a 24-hour UTC time axis with no empty "Time" legend,
// the healthy holder's sparkline is grey, and a screenshot is saved.
func TestDashboardInBrowser(t *testing.T) {
	needChromium(t)
	const base, leaks = 2, 4
	h := cwtest.Start(t, cwtest.Spec{Unread: base, FDLimit: 256, LeakEvery: 200 * time.Millisecond, LeakMax: leaks})
	a := newAgent(t) // the page reloads itself once a minute
	url := serve(t, a)
	scan(t, a)
	for i := 0; i < leaks; i++ {
		h.Next("LEAK")
		scan(t, a)
	}
	ctx := browser(t, 1280, 1400)

	pid := strconv.Itoa(h.PID)
	row := `tr[data-pid="` + pid + `"]`
	chart := `.chart[data-pid="` + pid + `"][data-kind="cw"]`
	type drawing struct {
		Pixels     int       `json:"pixels"`
		Series     []float64 `json:"series"`
		Width      int       `json:"width"`
		Open       bool      `json:"open"`
		Ticks      []string  `json:"ticks"`
		FirstSplit float64   `json:"firstSplit"`
		Legend     string    `json:"legend"`
		Spark      string    `json:"spark"`
		Muted      string    `json:"muted"`
		Crit       string    `json:"crit"`
		Title      string    `json:"title"`
		Cmdline    string    `json:"cmdline"`
	}
	var rowText, status string
	var drawn drawing
	err := chromedp.Do(ctx,
		chromedp.Navigate(url+"/?pid="+pid+"#p"+pid), // a row's link: the holder's details, open
		chromedp.WaitVisible(chromedp.CSS(row)),
		chromedp.WaitReady(chromedp.CSS(chart+`[data-drawn] canvas`)),
	)
	if err == nil {
		rowText, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(row)))
	}
	if err == nil {
		status, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`header .badge`)))
	}
	if err == nil {
		drawn, err = chromedp.Run(ctx, chromedp.Evaluate[drawing](fmt.Sprintf(`(() => {
			const el = document.querySelector(%q);
			const c = el.querySelector("canvas");
			const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
			let n = 0;
			for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) n++;
			const ax = el.uplot.axes[0];
			const css = getComputedStyle(document.documentElement);
			const probe = (v) => { const s = document.createElement("span"); s.style.color = "var(" + v + ")"; document.body.appendChild(s); const c = getComputedStyle(s).color; s.remove(); return c; };
			const row = document.querySelector(%q);
			return {pixels: n, series: Array.from(el.uplot.data[1]), width: c.width,
				open: document.getElementById(%q).open,
				ticks: (ax._values || []).map(String), firstSplit: (ax._splits || [0])[0],
				legend: (el.querySelector(".u-legend") || {textContent: ""}).textContent,
				spark: getComputedStyle(row.querySelector("svg.spark")).color, muted: probe("--muted"), crit: probe("--crit"),
				title: row.querySelector(".cmd").getAttribute("title"),
				cmdline: document.querySelector("#p" + %q + " .facts .cmd-full").textContent};
		})()`, chart, row, "p"+pid, pid)))
	}
	// The screenshot is taken whatever happened above: it shows what the browser saw.
	png, serr := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if serr != nil {
		t.Logf("screenshot: %v", serr)
	}
	save(t, "dashboard.png", png)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	if !strings.Contains(rowText, strconv.Itoa(base+leaks)) || !strings.Contains(rowText, pid) {
		t.Errorf("row of holder %s reads %q, want its pid and %d", pid, rowText, base+leaks)
	}
	if status == "" {
		t.Errorf("no status word in the status strip")
	}
	if !drawn.Open {
		t.Errorf("the holder's details are not open on /?pid=%s", pid)
	}
	if drawn.Pixels < 100 || drawn.Width < 100 {
		t.Errorf("chart canvas: %d painted pixels, width %d: not drawn", drawn.Pixels, drawn.Width)
	}
	// One point per scan, never falling, ending at the current count.
	ok := len(drawn.Series) == leaks+1 && drawn.Series[leaks] == base+leaks && drawn.Series[0] >= base
	for i := 1; ok && i < len(drawn.Series); i++ {
		ok = drawn.Series[i] >= drawn.Series[i-1]
	}
	if !ok {
		t.Errorf("chart series %v, want %d rising points from >= %d to %d", drawn.Series, leaks+1, base, base+leaks)
	}
	// The time axis: 24-hour UTC clock times, as the header's "last scan".
	if len(drawn.Ticks) == 0 {
		t.Errorf("time axis has no tick labels")
	}
	for _, tk := range drawn.Ticks {
		if !utcTick.MatchString(tk) {
			t.Errorf("time axis tick %q is not a 24-hour HH:MM[:SS]", tk)
		}
	}
	if len(drawn.Ticks) > 0 {
		want := time.Unix(int64(drawn.FirstSplit), 0).UTC().Format("15:04")
		if !strings.HasPrefix(drawn.Ticks[0], want) {
			t.Errorf("first tick %q at %v, want UTC %s", drawn.Ticks[0], drawn.FirstSplit, want)
		}
	}
	if strings.Contains(drawn.Legend, "Time") || strings.Contains(drawn.Legend, "--") {
		t.Errorf("chart legend %q shows an empty time entry", drawn.Legend)
	}
	// The holder is healthy: its sparkline is grey, not red.
	if drawn.Spark != drawn.Muted || drawn.Spark == drawn.Crit {
		t.Errorf("healthy holder's sparkline colour %s, want the muted grey %s (critical is %s)", drawn.Spark, drawn.Muted, drawn.Crit)
	}
	// The full command line: on hover over the row, and in the details.
	if drawn.Title == "" || drawn.Title != drawn.Cmdline || !strings.Contains(drawn.Cmdline, "-test.run") {
		t.Errorf("command line on hover %q, in the details %q", drawn.Title, drawn.Cmdline)
	}
}

// TestWallViewInBrowser: /?wall=1 at 1920x1080 and at a phone's 390 px:
// the status summary is in large type, the critical holder has a card (red
// sparkline) and the healthy one none, and the page never scrolls
// sideways. Both screenshots are saved (wall-1920.png, wall-390.png).
func TestWallViewInBrowser(t *testing.T) {
	needChromium(t)
	crit := cwtest.Start(t, cwtest.Spec{Unread: 14, FDLimit: 32}) // over half its fd limit: critical
	okay := cwtest.Start(t, cwtest.Spec{Unread: 2})
	a := newAgent(t)
	url := serve(t, a)
	scan(t, a)
	scan(t, a)
	for _, size := range []struct {
		name string
		w, h int
	}{{"wall-1920.png", 1920, 1080}, {"wall-390.png", 390, 844}} {
		t.Run(size.name, func(t *testing.T) {
			ctx := browser(t, size.w, size.h)
			type page struct {
				ScrollWidth int       `json:"scrollWidth"`
				InnerWidth  int       `json:"innerWidth"`
				StatusPx    float64   `json:"statusPx"`
				Status      string    `json:"status"`
				Headline    string    `json:"headline"`
				Cards       []int     `json:"cards"`
				CritSpark   string    `json:"critSpark"`
				Crit        string    `json:"crit"`
				Table       bool      `json:"table"`
				XMin        float64   `json:"xmin"`
				XMax        float64   `json:"xmax"`
				Data        []float64 `json:"data"`
			}
			var pg page
			err := chromedp.Do(ctx,
				chromedp.EmulateViewport(int64(size.w), int64(size.h)),
				chromedp.Navigate(url+"/?wall=1"),
				chromedp.WaitVisible(chromedp.CSS(`.summary-status`)),
				chromedp.WaitReady(chromedp.CSS(`.chart[data-total][data-drawn] canvas`)),
			)
			if err == nil {
				pg, err = chromedp.Run(ctx, chromedp.Evaluate[page](fmt.Sprintf(`(() => {
					const st = document.querySelector(".summary-status");
					const probe = (v) => { const s = document.createElement("span"); s.style.color = "var(" + v + ")"; document.body.appendChild(s); const c = getComputedStyle(s).color; s.remove(); return c; };
					const card = document.querySelector('.card[data-pid="%d"] svg.spark');
					const u = document.querySelector(".chart[data-total]").uplot;
					return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
						statusPx: parseFloat(getComputedStyle(st).fontSize), status: st.textContent.trim(),
						headline: document.querySelector(".summary-text").textContent,
						cards: Array.from(document.querySelectorAll(".card")).map(c => +c.dataset.pid),
						critSpark: card ? getComputedStyle(card).color : "", crit: probe("--crit"),
						table: !!document.querySelector("table.problems"),
						xmin: u.scales.x.min, xmax: u.scales.x.max, data: Array.from(u.data[0])};
				})()`, crit.PID)))
			}
			png, serr := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if serr != nil {
				t.Logf("screenshot: %v", serr)
			}
			save(t, size.name, png)
			if err != nil {
				t.Fatalf("browser: %v", err)
			}
			if pg.ScrollWidth > pg.InnerWidth {
				t.Errorf("page is %d px wide in a %d px window: it scrolls sideways", pg.ScrollWidth, pg.InnerWidth)
			}
			if pg.StatusPx < 40 || !strings.Contains(pg.Status, "CRIT") {
				t.Errorf("status summary %q in %v px type, want CRIT in at least 40 px", pg.Status, pg.StatusPx)
			}
			if !strings.Contains(pg.Headline, "need") || !strings.Contains(pg.Headline, "CLOSE_WAIT") {
				t.Errorf("headline %q", pg.Headline)
			}
			has := func(pid int) bool {
				for _, p := range pg.Cards {
					if p == pid {
						return true
					}
				}
				return false
			}
			if !has(crit.PID) || has(okay.PID) {
				t.Errorf("cards for pids %v: want the critical holder %d, not the healthy %d", pg.Cards, crit.PID, okay.PID)
			}
			if pg.CritSpark != pg.Crit {
				t.Errorf("critical holder's sparkline colour %q, want %q", pg.CritSpark, pg.Crit)
			}
			if pg.Table {
				t.Errorf("the wall view shows the full table")
			}
			// The host chart's time axis spans its points (scans a moment apart
			// included) and no more than the retained hour.
			if n := len(pg.Data); n == 0 || pg.XMin > pg.Data[0] || pg.XMax < pg.Data[n-1] || pg.XMax-pg.XMin > 3700 || pg.XMax-pg.XMin < 59 {
				t.Errorf("host chart's time axis %v..%v for points at %v", pg.XMin, pg.XMax, pg.Data)
			}
		})
	}
}
