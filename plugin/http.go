package plugin

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/docker/go-plugins-helpers/sdk"
)

// Manifest is the answer to /Plugin.Activate.
const Manifest = `{"Implements": ["LogDriver"]}`

// NewHandler returns the plugin's HTTP API. It is a plain http.Handler (not
// the SDK's Handler, which builds its own http.Server) so that the caller's
// server can close idle connections: the daemon's plugin client keeps one
// open indefinitely, which would otherwise hold a goroutine and an FD.
func NewHandler(d *Driver) http.Handler {
	h := http.NewServeMux()
	h.HandleFunc("/Plugin.Activate", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", sdk.DefaultContentTypeV1_1)
		_, _ = io.WriteString(w, Manifest+"\n")
	})
	h.HandleFunc("/LogDriver.StartLogging", func(w http.ResponseWriter, r *http.Request) {
		var req StartLoggingRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			respond(w, http.StatusBadRequest, "logferry: bad StartLogging request: "+err.Error())
			return
		}
		if req.Info.ContainerID == "" {
			respond(w, http.StatusBadRequest, "logferry: StartLogging without a container id")
			return
		}
		if err := d.StartLogging(req.File, req.Info); err != nil {
			respond(w, http.StatusInternalServerError, err.Error())
			return
		}
		respond(w, http.StatusOK, "")
	})
	h.HandleFunc("/LogDriver.StopLogging", func(w http.ResponseWriter, r *http.Request) {
		var req StopLoggingRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			respond(w, http.StatusBadRequest, "logferry: bad StopLogging request: "+err.Error())
			return
		}
		_ = d.StopLogging(req.File)
		respond(w, http.StatusOK, "")
	})
	h.HandleFunc("/LogDriver.Capabilities", func(w http.ResponseWriter, r *http.Request) {
		var c capabilitiesResponse
		c.Cap.ReadLogs = true
		w.Header().Set("Content-Type", sdk.DefaultContentTypeV1_1)
		_ = json.NewEncoder(w).Encode(c)
	})
	h.HandleFunc("/LogDriver.ReadLogs", func(w http.ResponseWriter, r *http.Request) {
		var req ReadLogsRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			respond(w, http.StatusBadRequest, "logferry: bad ReadLogs request: "+err.Error())
			return
		}
		// The request's context ends when the daemon hangs up (docker
		// logs -f interrupted), which ends the store's reader.
		rc, err := d.ReadLogs(r.Context(), req.Info, req.Config)
		if err != nil {
			respond(w, http.StatusInternalServerError, "logferry: "+err.Error())
			return
		}
		defer rc.Close()
		w.Header().Set("Content-Type", "application/x-json-stream")
		w.WriteHeader(http.StatusOK)
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush() // a follower with nothing to read yet still gets its answer
		}
		_, _ = io.Copy(flushWriter{w}, rc)
	})
	return h
}

func respond(w http.ResponseWriter, status int, errText string) {
	w.Header().Set("Content-Type", sdk.DefaultContentTypeV1_1)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errResponse{Err: errText})
}

// flushWriter sends every write at once: a follower must see each line as
// it is written, not when a buffer fills.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}
