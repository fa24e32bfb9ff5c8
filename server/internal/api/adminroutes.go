package api

import "net/http"

// AdminRoute is an admin-plane route served by another package
// (notifications, incidents, reports); the API puts its authentication in
// front. Write routes need the admin role (managers too when Managers is
// set, as the web UI lets them), the others any role.
type AdminRoute struct {
	Pattern  string // http.ServeMux pattern, e.g. "GET /api/v1/incidents"
	Write    bool
	Managers bool
	Handler  http.HandlerFunc
}

// adminRoutes mounts Config.AdminRoutes.
func (s *Server) adminRoutes(mux *http.ServeMux) {
	for _, rt := range s.cfg.AdminRoutes {
		need := readOnly
		switch {
		case rt.Write && rt.Managers:
			need = registerWrite
		case rt.Write:
			need = write
		}
		mux.HandleFunc(rt.Pattern, s.admin(need, rt.Handler))
	}
}

// Caller names the token behind an admin request, for the record of what
// it changed.
func Caller(r *http.Request) string { return tokenFrom(r.Context()).Name }
