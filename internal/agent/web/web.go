// Package web holds the agent dashboard's embedded assets: the page
// template, its script and style sheet, and a vendored copy of uPlot 1.6.32
// (MIT, see uplot/LICENSE and uplot/VERSION). Nothing is fetched from a CDN:
// the dashboard works offline.
package web

import "embed"

// Template is the dashboard page's html/template source.
//
//go:embed index.html.tmpl
var Template string

// Static holds the files served under /static/: app.js, app.css and
// uplot/{uPlot.iife.min.js,uPlot.min.css,LICENSE}.
//
//go:embed app.js app.css uplot/uPlot.iife.min.js uplot/uPlot.min.css uplot/LICENSE
var Static embed.FS
