package leakcheck

import (
	"encoding/json"
	"mime"
	"net/http"
	"strings"
)

// Handler returns an http.Handler that runs [Tracker.Report] on every
// request and writes it as text, or as JSON when the query has
// format=json or the Accept header asks for application/json. Mount it at
// /debug/closewait next to net/http/pprof; like pprof, it reveals source
// paths and peer addresses, so do not expose it publicly.
func (t *Tracker) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rep := t.Report()
		w.Header().Set("Cache-Control", "no-store")
		if wantsJSON(req) {
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			_ = enc.Encode(rep)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_ = rep.WriteText(w)
	})
}

func wantsJSON(req *http.Request) bool {
	switch req.URL.Query().Get("format") {
	case "json":
		return true
	case "text":
		return false
	}
	for _, v := range req.Header.Values("Accept") {
		for _, part := range strings.Split(v, ",") {
			if mt, _, err := mime.ParseMediaType(part); err == nil && mt == "application/json" {
				return true
			}
		}
	}
	return false
}
