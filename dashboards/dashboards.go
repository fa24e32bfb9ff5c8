// Package dashboards holds the web UI's embedded assets: the html/template
// pages (templates/), static CSS (static/) and the Grafana dashboard for the
// server's /metrics (grafana/). No build step: the files are served as they
// are, and the 30-day trend chart is SVG rendered by the server.
package dashboards

import "embed"

// Templates holds templates/*.html: layout.html defines "layout", and every
// other file defines "content" for one page.
//
//go:embed templates/*.html
var Templates embed.FS

// Static holds static/*, served under /static/ with a content-hash query.
//
//go:embed static/*
var Static embed.FS

// Grafana holds grafana/*.json, dashboards to import into Grafana.
//
//go:embed grafana/*.json
var Grafana embed.FS
