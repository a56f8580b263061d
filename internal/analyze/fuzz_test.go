package analyze

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/closewait/closewait/internal/diagnose"
)

// FuzzParse feeds arbitrary text to the format detection and every parser:
// they must return a result or an error, never panic, and a result must be
// judged without panicking either. Seeds: the recorded samples in testdata
// (and testdata/fuzz/FuzzParse for crashers found so far).
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.txt")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		// Also each sample's first lines, so mutations reach every branch quickly.
		lines := strings.SplitN(string(b), "\n", 5)
		f.Add([]byte(strings.Join(lines[:min(4, len(lines))], "\n")))
	}
	f.Add([]byte("CLOSE-WAIT 1 0 [::ffff:1.2.3.4]:80 *:* users:((\"a b\",pid=1,fd=2),(\"c\",pid=3,fd=4)) timer:(keepalive,1min,0) ino:5\n\t rtt:1/2 lastack:3"))
	f.Add([]byte("Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port\ntcp CLOSE-WAIT 1 0 1.1.1.1:1 2.2.2.2:2 users:((\"x\n\",pid=1,fd=1))"))
	f.Add([]byte("tcp6 1 0 ::1:80 ::1:5000 CLOSE_WAIT 0 12 7/app keepalive (1.00/0/0)"))
	f.Add([]byte("COMMAND PID USER FD TYPE DEVICE SIZE/OFF NODE NAME\na\\x2 1 u 5u IPv4 9 0t0 TCP 1.1.1.1:1->2.2.2.2:2 (ST=CLOSE_WAIT QR=1 QS=0)"))
	f.Add([]byte("Total: 1\nTCP: 1 (estab 1, closed 0, orphaned 0, timewait 0)"))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Parse(data, Options{})
		if err != nil {
			if res != nil {
				t.Fatal("a result with an error")
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error of several lines: %q", err)
			}
			return
		}
		r := diagnose.Analyze(res.Snapshot, diagnose.DefaultThresholds, diagnose.Options{})
		n := 0
		for _, c := range res.Snapshot.States {
			n += c
		}
		if r.CloseWait > n {
			t.Fatalf("%d CLOSE_WAIT judged, %d sockets counted", r.CloseWait, n)
		}
	})
}

// fuzzParser fuzzes one parser directly, past format detection, seeded with
// the samples of its format cut into small inputs: each line alone, and the
// header with each line. Whole samples (kilobytes; TestParse reads them)
// are no seeds: the engine minimises every new input it finds interesting,
// and the first one, a mutated whole sample, took the whole -fuzztime to
// minimise (FuzzNetstat made 4 executions in 20 s).
func fuzzParser(f *testing.F, glob string, parse func(*lineSource) (*parsed, error)) {
	files, _ := filepath.Glob(filepath.Join("testdata", glob))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		const header = 2 // netstat's two header lines; ss and lsof have one
		for i := range lines {
			f.Add(lines[i])
			if i >= header {
				f.Add(strings.Join(lines[:header], "\n") + "\n" + lines[i])
			}
		}
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := parse(newLineSource(strings.NewReader(text)))
		if err != nil {
			if p != nil {
				t.Fatal("a result with an error")
			}
			var le *LineError
			if !errors.As(err, &le) || le.Line < 1 {
				t.Fatalf("error without a line number: %v", err)
			}
			return
		}
		res := p.result(Options{})
		res.Judge(diagnose.DefaultThresholds, diagnose.Options{})
	})
}

// FuzzSS fuzzes the ss parser.
func FuzzSS(f *testing.F) { fuzzParser(f, "ss-tan*.txt", parseSS) }

// FuzzSSSummary fuzzes the ss -s parser.
func FuzzSSSummary(f *testing.F) { fuzzParser(f, "ss-s.txt", parseSSSummary) }

// FuzzNetstat fuzzes the netstat parser.
func FuzzNetstat(f *testing.F) { fuzzParser(f, "netstat-*.txt", parseNetstat) }

// FuzzLsof fuzzes the lsof parser.
func FuzzLsof(f *testing.F) { fuzzParser(f, "lsof*.txt", parseLsof) }
