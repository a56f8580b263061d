package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/closewait/closewait/internal/agent"
	"github.com/closewait/closewait/internal/cwtest"
)

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

// TestDashboardInBrowser loads the dashboard in headless Chromium: the
// leaking holder is listed with its count, its uPlot chart is drawn from
// /api/v1/history (a canvas with painted pixels, the series ending at the
// current count), and a screenshot is saved as an artefact.
func TestDashboardInBrowser(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("needs Chromium at %s (apt-get install chromium chromium-driver): %v", chromium, err)
	}
	const base, leaks = 2, 4
	h := cwtest.Start(t, cwtest.Spec{Unread: base, FDLimit: 256, LeakEvery: 200 * time.Millisecond, LeakMax: leaks})
	a := newAgent(t, agent.Options{Interval: time.Minute}) // the page reloads itself once a minute
	url := serve(t, a)
	scan(t, a)
	for i := 0; i < leaks; i++ {
		h.Next("LEAK")
		scan(t, a)
	}

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
		chromedp.WindowSize(1280, 1400),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	defer cancelTab()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()

	pid := strconv.Itoa(h.PID)
	row := `tr[data-pid="` + pid + `"]`
	chart := `.chart[data-pid="` + pid + `"][data-kind="cw"]`
	type drawing struct {
		Pixels int       `json:"pixels"`
		Series []float64 `json:"series"`
		Width  int       `json:"width"`
		Open   bool      `json:"open"`
	}
	var rowText, status string
	var drawn drawing
	var png []byte
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
			return {pixels: n, series: el.uplot ? Array.from(el.uplot.data[1]) : [], width: c.width,
				open: document.getElementById(%q).open};
		})()`, chart, "p"+pid)))
	}
	// The screenshot is taken whatever happened above: it shows what the browser saw.
	png, serr := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if serr != nil {
		t.Logf("screenshot: %v", serr)
	}
	if len(png) > 0 {
		dir := artifactDir(t)
		p := filepath.Join(dir, "dashboard.png")
		if werr := os.WriteFile(p, png, 0o644); werr != nil {
			t.Errorf("save screenshot: %v", werr)
		} else {
			t.Logf("dashboard screenshot: %s", p)
		}
	}
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
}
