package analyze

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
)

// MaxLine is the longest line (or ss record with its continuation lines)
// Read accepts: an ss line listing a socket's owners is about 30 bytes per
// owner, so this allows half a million owners of one socket.
const MaxLine = 16 << 20

// numbered is a line and its number in the input, counted from 1.
type numbered struct {
	n int
	s string
}

// lineSource reads the input one line at a time, so that memory follows
// what the parsers keep (the sockets found), not the size of the input.
// Blank lines are skipped: no format gives them a meaning. A line longer
// than MaxLine, an input longer than MaxInput or a read error ends the
// lines, and err says why.
type lineSource struct {
	r       *bufio.Reader
	n       int   // lines read
	size    int64 // bytes read
	err     error
	pending []numbered // read ahead by the format detection, replayed first
	long    []byte     // a line longer than the reader's buffer, assembled
}

func newLineSource(r io.Reader) *lineSource {
	return &lineSource{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next non-blank line and its number; ok is false at the
// end of the input or on an error (see err).
func (ls *lineSource) next() (n int, line string, ok bool) {
	if len(ls.pending) > 0 {
		l := ls.pending[0]
		ls.pending = ls.pending[1:]
		return l.n, l.s, true
	}
	for ls.err == nil {
		b, ok := ls.read()
		if !ok {
			return 0, "", false
		}
		if ls.n == 1 {
			b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // a BOM from an editor
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		return ls.n, string(b), true
	}
	return 0, "", false
}

// read returns the next line without its line ending; the bytes are valid
// until the next call.
func (ls *lineSource) read() ([]byte, bool) {
	ls.long = ls.long[:0]
	for {
		chunk, err := ls.r.ReadSlice('\n')
		ls.size += int64(len(chunk))
		if ls.size > MaxInput {
			ls.err = fmt.Errorf("the input is larger than %d MiB", MaxInput>>20)
			return nil, false
		}
		if len(ls.long)+len(chunk) > MaxLine {
			ls.err = fmt.Errorf("line %d is longer than %d MiB: not the text output of ss, netstat or lsof", ls.n+1, MaxLine>>20)
			return nil, false
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			ls.long = append(ls.long, chunk...)
			continue
		case err == io.EOF && len(chunk) == 0 && len(ls.long) == 0:
			return nil, false
		case err != nil && err != io.EOF:
			ls.err = fmt.Errorf("read input: %w", err)
			return nil, false
		}
		line := chunk
		if len(ls.long) > 0 {
			ls.long = append(ls.long, chunk...)
			line = ls.long
		}
		ls.n++
		line = bytes.TrimSuffix(line, []byte("\n"))
		return bytes.TrimSuffix(line, []byte("\r")), true
	}
}

// all yields the remaining non-blank lines with their numbers.
func (ls *lineSource) all() iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		for {
			n, l, ok := ls.next()
			if !ok || !yield(n, l) {
				return
			}
		}
	}
}

// lastLine is the number of the last line read (at least 1), for errors
// about the input as a whole.
func (ls *lineSource) lastLine() int { return max(ls.n, 1) }
