package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// runJSONCount reads closewait JSON (a file argument or stdin) and prints one
// line of counts for the benchmark's sanity check:
//
//	`closewait sockets --json` (an array):  sockets=N owned=M
//	`closewait sockets --ndjson`:          sockets=N owned=M
//	`closewait --json` (the report):       close_wait=N attributed=M unattributed=U processes=P
//
// "owned" counts sockets with at least one owner; "attributed" sums the
// processes' close_wait counts.
func runJSONCount(args []string) int {
	var in io.Reader = os.Stdin
	if len(args) > 0 && args[0] != "-" {
		f, err := os.Open(args[0])
		if err != nil {
			fmt.Fprintln(os.Stderr, "jsoncount:", err)
			return 1
		}
		defer f.Close()
		in = f
	}
	r := bufio.NewReaderSize(in, 1<<20)
	first, err := firstByte(r)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jsoncount: empty input")
		return 1
	}
	dec := json.NewDecoder(r)
	type sock struct {
		Owners []json.RawMessage `json:"owners"`
	}
	var n, owned int
	count := func(s sock) {
		n++
		if len(s.Owners) > 0 {
			owned++
		}
	}
	switch first {
	case '[':
		if _, err := dec.Token(); err != nil {
			return jsonErr(err)
		}
		for dec.More() {
			var s sock
			if err := dec.Decode(&s); err != nil {
				return jsonErr(err)
			}
			count(s)
		}
		fmt.Printf("sockets=%d owned=%d\n", n, owned)
	case '{':
		// Either the report or NDJSON sockets.
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return jsonErr(err)
		}
		var rep struct {
			Summary *struct {
				CloseWait    int `json:"close_wait"`
				Unattributed int `json:"unattributed_close_wait"`
			} `json:"summary"`
			Processes []struct {
				CloseWait int `json:"close_wait"`
			} `json:"processes"`
		}
		if err := json.Unmarshal(raw, &rep); err != nil {
			return jsonErr(err)
		}
		if rep.Summary != nil {
			att := 0
			for _, p := range rep.Processes {
				att += p.CloseWait
			}
			fmt.Printf("close_wait=%d attributed=%d unattributed=%d processes=%d\n",
				rep.Summary.CloseWait, att, rep.Summary.Unattributed, len(rep.Processes))
			return 0
		}
		var s sock
		if err := json.Unmarshal(raw, &s); err != nil {
			return jsonErr(err)
		}
		count(s)
		for dec.More() {
			var s sock
			if err := dec.Decode(&s); err != nil {
				return jsonErr(err)
			}
			count(s)
		}
		fmt.Printf("sockets=%d owned=%d\n", n, owned)
	default:
		fmt.Fprintf(os.Stderr, "jsoncount: not JSON (starts with %q)\n", first)
		return 1
	}
	return 0
}

// firstByte peeks at the first non-space byte.
func firstByte(r *bufio.Reader) (byte, error) {
	for {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return b, r.UnreadByte()
	}
}

func jsonErr(err error) int {
	fmt.Fprintln(os.Stderr, "jsoncount:", err)
	return 1
}
