// Package browsertest checks the agent's dashboard in headless Chromium
// (chromedp). It is a module of its own, as packaging/ is, so that chromedp
// stays out of closewait's module graph: run its tests with
// `cd internal/agent/browsertest && go test ./...` (.ci/run does, with
// -mod=mod: its go.mod lists the main module's requirements too, and may lag
// them by a `go mod tidy`).
package browsertest
