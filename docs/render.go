package docs

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// The topics use a small markdown subset: "## " headings, paragraphs (one
// line each), "- " bullets, fenced code blocks and pipe tables. The
// renderers below turn it into terminal text and roff.

// block is one element of a topic.
type block struct {
	kind  string     // "h2", "p", "li", "code", "table"
	text  string     // h2, p, li
	lines []string   // code
	rows  [][]string // table, header first, separator dropped
}

func parse(md string) []block {
	var out []block
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		switch {
		case strings.TrimSpace(l) == "":
		case strings.HasPrefix(l, "```"):
			b := block{kind: "code"}
			for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
				b.lines = append(b.lines, lines[i])
			}
			out = append(out, b)
		case strings.HasPrefix(l, "## "):
			out = append(out, block{kind: "h2", text: strings.TrimPrefix(l, "## ")})
		case strings.HasPrefix(l, "- "):
			out = append(out, block{kind: "li", text: strings.TrimPrefix(l, "- ")})
		case strings.HasPrefix(l, "|"):
			b := block{kind: "table"}
			for ; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
				cells := splitRow(lines[i])
				if isSeparator(cells) {
					continue
				}
				b.rows = append(b.rows, cells)
			}
			i--
			out = append(out, b)
		default:
			out = append(out, block{kind: "p", text: strings.TrimSpace(l)})
		}
	}
	return out
}

// splitRow splits a pipe-table row; a pipe inside `code` does not split.
func splitRow(l string) []string {
	l = strings.TrimSpace(l)
	l = strings.TrimPrefix(l, "|")
	l = strings.TrimSuffix(l, "|")
	var cells []string
	var cur strings.Builder
	inCode := false
	for _, r := range l {
		switch {
		case r == '`':
			inCode = !inCode
			cur.WriteRune(r)
		case r == '|' && !inCode:
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteRune(r)
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

func isSeparator(cells []string) bool {
	for _, c := range cells {
		if strings.Trim(c, "-: ") != "" {
			return false
		}
	}
	return true
}

var (
	reBold   = regexp.MustCompile(`\*\*([^*]+)\*\*`)
	reItalic = regexp.MustCompile(`(^|[^\w*])\*([^*\s][^*]*)\*`)
	reCode   = regexp.MustCompile("`([^`]+)`")
)

// plain removes inline markup.
func plain(s string) string {
	s = reCode.ReplaceAllString(s, "$1")
	s = reBold.ReplaceAllString(s, "$1")
	return reItalic.ReplaceAllString(s, "$1$2")
}

// Text renders a topic body as plain text wrapped at width columns.
func Text(md string, width int) string {
	if width < 40 {
		width = 80
	}
	var b strings.Builder
	blocks := parse(md)
	for i, bl := range blocks {
		if i > 0 && !(bl.kind == "li" && blocks[i-1].kind == "li") {
			b.WriteString("\n")
		}
		switch bl.kind {
		case "h2":
			b.WriteString(strings.ToUpper(plain(bl.text)) + "\n")
		case "p":
			b.WriteString(wrap(plain(bl.text), width, "", ""))
		case "li":
			b.WriteString(wrap(plain(bl.text), width, "  - ", "    "))
		case "code":
			for _, l := range bl.lines {
				b.WriteString(strings.TrimRight("    "+l, " ") + "\n")
			}
		case "table":
			b.WriteString(textTable(bl.rows, width))
		}
	}
	return b.String()
}

// textTable aligns every column but the last, which wraps.
func textTable(rows [][]string, width int) string {
	ncol := 0
	for _, r := range rows {
		ncol = max(ncol, len(r))
	}
	w := make([]int, ncol)
	for _, r := range rows {
		for j, c := range r[:len(r)-1] {
			w[j] = max(w[j], utf8.RuneCountInString(plain(c)))
		}
	}
	var b strings.Builder
	for ri, r := range rows {
		var pre strings.Builder
		pre.WriteString("  ")
		for j, c := range r[:len(r)-1] {
			c = plain(c)
			if ri == 0 {
				c = strings.ToUpper(c)
			}
			pre.WriteString(c + strings.Repeat(" ", w[j]-utf8.RuneCountInString(c)+2))
		}
		last := plain(r[len(r)-1])
		if ri == 0 {
			last = strings.ToUpper(last)
		}
		indent := strings.Repeat(" ", utf8.RuneCountInString(pre.String()))
		if width-len(indent) < 30 {
			b.WriteString(strings.TrimRight(pre.String(), " ") + "\n")
			b.WriteString(wrap(last, width, "      ", "      "))
			continue
		}
		b.WriteString(wrap(last, width, pre.String(), indent))
	}
	return b.String()
}

// Wrap fills the words of s into lines of at most width runes, the first
// starting with first and the others with rest.
func Wrap(s string, width int, first, rest string) string { return wrap(s, width, first, rest) }

// wrap fills words into lines of at most width runes.
func wrap(s string, width int, first, rest string) string {
	var b strings.Builder
	line := first
	n := utf8.RuneCountInString(first)
	empty := true
	for _, w := range strings.Fields(s) {
		wl := utf8.RuneCountInString(w)
		if !empty && n+1+wl > width {
			b.WriteString(line + "\n")
			line, n, empty = rest, utf8.RuneCountInString(rest), true
		}
		if !empty {
			line += " "
			n++
		}
		line += w
		n += wl
		empty = false
	}
	b.WriteString(line + "\n")
	return b.String()
}

// Roff renders a topic body as man(7) source (for a section of the man page).
func Roff(md string) string {
	var b strings.Builder
	for _, bl := range parse(md) {
		switch bl.kind {
		case "h2":
			fmt.Fprintf(&b, ".SS %s\n", RoffEscape(plain(bl.text)))
		case "p":
			fmt.Fprintf(&b, ".PP\n%s\n", roffInline(bl.text))
		case "li":
			fmt.Fprintf(&b, ".IP \\(bu 2\n%s\n", roffInline(bl.text))
		case "code":
			b.WriteString(".PP\n.RS 2\n.nf\n")
			for _, l := range bl.lines {
				b.WriteString(roffLine(RoffEscape(l)) + "\n")
			}
			b.WriteString(".fi\n.RE\n")
		case "table":
			for _, r := range bl.rows[1:] {
				fmt.Fprintf(&b, ".TP\n%s\n", roffLine(`\fB`+RoffEscape(plain(r[0]))+`\fR`))
				var rest []string
				for j, c := range r[1:] {
					h := plain(bl.rows[0][j+1])
					if j < len(r)-2 && h != "" {
						rest = append(rest, RoffEscape(h)+": "+roffInline(c)+".")
						continue
					}
					rest = append(rest, roffInline(c))
				}
				b.WriteString(roffLine(strings.Join(rest, " ")) + "\n")
			}
		}
	}
	return b.String()
}

// roffInline escapes s and turns `code` and **bold** into bold, *x* into italic.
func roffInline(s string) string {
	s = RoffEscape(s)
	s = reCode.ReplaceAllString(s, `\fB$1\fR`)
	s = reBold.ReplaceAllString(s, `\fB$1\fR`)
	s = reItalic.ReplaceAllString(s, `$1\fI$2\fR`)
	return roffLine(s)
}

// roffLine protects a line that would start with a control character.
func roffLine(s string) string {
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		return `\&` + s
	}
	return s
}

// RoffEscape escapes text for roff: backslashes, minus signs (so that flags
// copy and paste as ASCII) and non-ASCII characters.
func RoffEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\\':
			b.WriteString(`\e`)
		case r == '-':
			b.WriteString(`\-`)
		case r > 127:
			fmt.Fprintf(&b, `\[u%04X]`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
