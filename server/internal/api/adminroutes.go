package api

import "net/http"

// AdminRoute is an admin-plane route served by another package
// (notifications, incidents, reports); the API puts its authentication in
// front. Write routes need the admin role, the others any role.
type AdminRoute struct {
	Pattern string // http.ServeMux pattern, e.g. "GET /api/v1/incidents"
	Write   bool
	Handler http.HandlerFunc
}

// adminRoutes mounts Config.AdminRoutes.
func (s *Server) adminRoutes(mux *http.ServeMux) {
	for _, rt := range s.cfg.AdminRoutes {
		mux.HandleFunc(rt.Pattern, s.admin(access(rt.Write), rt.Handler))
	}
}

// Caller names the token behind an admin request, for the record of what
// it changed.
func Caller(r *http.Request) string { return tokenFrom(r.Context()).Name }
