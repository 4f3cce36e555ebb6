package sidecar

import (
	"encoding/json"
	"fmt"
	"net/http"
	"text/tabwriter"
)

// ContainersHandler serves the containers page: every running container
// the sidecar knows and whether it is shipped (route file or api) or why
// not. Plain text, one container a line; ?format=json for JSON.
func (r *Router) ContainersHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		views := r.Containers()
		if req.URL.Query().Get("format") == "json" {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(views)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CONTAINER ID\tNAME\tIMAGE\tSHIPPED\tROUTE\tREASON")
		for _, v := range views {
			shipped := "no"
			if v.Route == RouteFile || v.Route == RouteAPI {
				shipped = "yes"
			}
			reason := v.Reason
			if reason == "" {
				reason = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", shortID(v.ID), v.Name, v.Image, shipped, v.Route, reason)
		}
		_ = tw.Flush()
	})
}
