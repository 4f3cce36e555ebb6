package sidecar

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/logopts"
	"github.com/logferry/logferry/shared/loki"
	"github.com/logferry/logferry/shared/pipeline"
	"github.com/logferry/logferry/sidecar/engine"
	"github.com/logferry/logferry/sidecar/positions"
)

// Routes a container can take.
const (
	RouteFile   = "file"   // json-file, read from disk
	RouteAPI    = "api"    // any other driver: the Engine's logs stream
	RoutePlugin = "plugin" // logferry's plugin ships it: skipped
	RouteNone   = "none"   // driver none: nothing to read
	// RouteDropped: loki-relabel-config dropped it; never read.
	RouteExcluded = "excluded" // the selection leaves it out; never read
	RouteDropped  = "dropped"
	RouteError    = "error" // its label set or endpoint could not be set up: skipped, see the log
)

// Router discovers containers and owns one shipper per container it ships.
// Every shipper's goroutine belongs to the Router, which waits for them.
type Router struct {
	// cfg is the configuration the Router started with: the settings a
	// reload cannot change are read from it. live (under mu) is the
	// latest reloaded one: selection and the containers' log options.
	cfg     Config
	eng     *engine.Client
	pool    *loki.Pool
	pos     *positions.Store
	files   FileSource
	host    string
	log     *slog.Logger
	m       *Metrics
	builder func(o logopts.Options) (*labels.Builder, error)

	mu       sync.Mutex
	live     Config
	shippers map[string]*shipper // by container id
	routes   map[string]string   // route of every known running container
	// views: what the containers page shows of each container in routes;
	// excluded: why, for those on RouteExcluded.
	views    map[string]ContainerView
	excluded map[string]string
	// again: containers that started again (docker restart, a rename)
	// while their finished shipper still waited for Loki; each is shipped
	// anew once that shipper is gone.
	again    map[string]*replay
	wg       sync.WaitGroup
	posDirty chan struct{}
	ready    atomic.Bool
	// stopping: Run's context ended. From then on a line the dispatcher
	// resolves as not delivered was dropped by the shutdown, not refused by
	// Loki: it must be read again at the next start, so it does not move
	// the positions.
	stopping atomic.Bool
}

// Ready reports whether the first discovery has run.
func (r *Router) Ready() bool { return r.ready.Load() }

// NewRouter wires a Router; Run starts it.
func NewRouter(cfg Config, eng *engine.Client, pool *loki.Pool, pos *positions.Store, files FileSource,
	host string, m *Metrics, log *slog.Logger) *Router {
	r := &Router{cfg: cfg, live: cfg, eng: eng, pool: pool, pos: pos, files: files, host: host, log: log, m: m,
		shippers: map[string]*shipper{}, routes: map[string]string{}, again: map[string]*replay{},
		views: map[string]ContainerView{}, excluded: map[string]string{},
		posDirty: make(chan struct{}, 1)}
	r.builder = func(o logopts.Options) (*labels.Builder, error) { return labels.NewBuilder(o.Labels, host) }
	return r
}

// Run discovers containers and follows events until ctx ends; then it
// stops every shipper (saving positions) and returns.
func (r *Router) Run(ctx context.Context) error {
	r.m.positions.Set(float64(r.pos.Len()))
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.savePositions(ctx)
	}()
	stop := context.AfterFunc(ctx, func() { r.stopping.Store(true) })
	defer stop()
	err := r.eng.Events(ctx, time.Time{}, func(ev engine.Event) { r.handle(ctx, ev) })
	r.stopping.Store(true)
	r.stopAll()
	r.wg.Wait()
	if ferr := r.pos.Flush(); ferr != nil {
		r.log.Error("saving positions", "err", ferr)
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (r *Router) handle(ctx context.Context, ev engine.Event) {
	switch ev.Action {
	case engine.ActionResync:
		r.resync(ctx)
	case engine.ActionStart:
		c, err := r.eng.Inspect(ctx, ev.ID)
		if err != nil {
			r.log.Warn("inspecting a started container", "container_id", shortID(ev.ID), "err", err)
			return
		}
		r.startNew(ctx, c)
	case engine.ActionDie:
		r.finish(ev.ID)
	case engine.ActionDestroy:
		r.removed(ev.ID)
	case engine.ActionRename:
		// Labels carry the name: ship the rest under the new one.
		r.finish(ev.ID)
		if c, err := r.eng.Inspect(ctx, ev.ID); err == nil && c.Running {
			r.start(ctx, c)
		}
	}
}

// resync reconciles with the daemon: ship every running container, finish
// the shippers of containers no longer running.
func (r *Router) resync(ctx context.Context) {
	list, err := r.eng.List(ctx)
	if err != nil {
		r.log.Error("listing containers", "err", err)
		return
	}
	running := map[string]bool{}
	for _, c := range list {
		running[c.ID] = true
		r.start(ctx, c)
	}
	r.mu.Lock()
	var gone []string
	for id := range r.shippers {
		if !running[id] {
			gone = append(gone, id)
		}
	}
	r.mu.Unlock()
	for _, id := range gone {
		r.finish(id)
	}
	r.prune(ctx)
	r.ready.Store(true)
	r.log.Info("containers discovered", "running", len(list))
}

// removed forgets a container the daemon no longer has: its position
// goes, once its shipper (if any) is done with it.
func (r *Router) removed(id string) {
	r.mu.Lock()
	s, ok := r.shippers[id]
	if ok {
		s.destroyed.Store(true)
	}
	r.mu.Unlock()
	if ok {
		s.finish()
	} else {
		r.pos.Delete(id)
		r.dirty()
	}
}

// prune forgets the containers with a position the daemon no longer has:
// removed while the sidecar was not running (or its events subscription
// was down), their destroy event never came. Only positions saved before
// the daemon's list are looked at, so a container created since is kept.
func (r *Router) prune(ctx context.Context) {
	saved := r.pos.IDs()
	if len(saved) == 0 {
		return
	}
	exist, err := r.eng.Existing(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("not pruning positions", "err", err)
		}
		return
	}
	n := 0
	for _, id := range saved {
		if !exist[id] {
			r.removed(id)
			n++
			continue
		}
		r.finishStopped(ctx, id)
	}
	if n > 0 {
		r.log.Info("forgot the positions of removed containers", "count", n)
	}
}

// finishStopped ships what is left of a container with a saved position
// that exists but is not running and has no shipper: it stopped while the
// sidecar was down (found by the soak: one that exited as the sidecar was
// killed lost its last lines). Its shipper reads to the end of what the
// container wrote and ends.
func (r *Router) finishStopped(ctx context.Context, id string) {
	r.mu.Lock()
	_, shipping := r.shippers[id]
	_, known := r.routes[id]
	r.mu.Unlock()
	if shipping || known {
		return
	}
	c, err := r.eng.Inspect(ctx, id)
	if err != nil || c.Running {
		return // gone meanwhile, or running: the events and the list ship it
	}
	r.mu.Lock()
	s := r.startLocked(ctx, c)
	r.mu.Unlock()
	if s != nil {
		r.log.Info("reading what a container stopped while the sidecar was down left", "container", c.Name, "container_id", shortID(id))
		r.finish(id)
	}
}

// route decides how a container's logs are read.
func (r *Router) route(c engine.Container) string {
	driver := c.LogDriver
	name := path.Base(driver)
	if i := strings.IndexByte(name, ':'); i >= 0 {
		name = name[:i]
	}
	switch {
	case name == r.cfg.PluginName:
		return RoutePlugin
	case driver == "none":
		return RouteNone
	case driver == "json-file" && c.LogPath != "":
		if err := checkLogPath(r.cfg.ContainersDir, c.ID, r.hostPath(c.LogPath)); err != nil {
			// dockerd reads its own file for the logs API: that route
			// trusts no path it was given.
			r.m.filesRefused.WithLabelValues(refusedOutside).Inc()
			r.log.Warn("not reading this container's log file, which is not <containers-dir>/<id>/<id>-json.log; shipping it through the Engine's logs API (is containers-dir the daemon's <data-root>/containers?)",
				"container", c.Name, "container_id", shortID(c.ID), "err", err)
			return RouteAPI
		}
		return RouteFile
	default:
		return RouteAPI
	}
}

// hostPath maps the daemon's log path to this process's view of the
// containers directory (the sidecar may see it mounted elsewhere).
func (r *Router) hostPath(logPath string) string {
	const daemonDir = "/var/lib/docker/containers"
	if rest, ok := strings.CutPrefix(logPath, daemonDir); ok && r.cfg.ContainersDir != daemonDir {
		return filepath.Join(r.cfg.ContainersDir, rest)
	}
	return logPath
}

// startNew ships a container that started while the sidecar ran.
func (r *Router) startNew(ctx context.Context, c engine.Container) { r.start(ctx, c) }

// start ships c unless it is shipped already or takes no route. A container
// without a saved position is read from its oldest rotated file: the
// sidecar never shipped any of it, and every line it still has on disk is
// owed to Loki (also when it was written while the sidecar was down).
func (r *Router) start(ctx context.Context, c engine.Container) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.startLocked(ctx, c)
}

// replay is a start of a container whose shipper was finishing; died: the
// run it started has ended too.
type replay struct {
	c    engine.Container
	died bool
}

// startLocked is start with r.mu held; it returns the new shipper, if any.
func (r *Router) startLocked(ctx context.Context, c engine.Container) *shipper {
	const fromOldest = true
	if s, ok := r.shippers[c.ID]; ok {
		if s.finishing() {
			r.again[c.ID] = &replay{c: c}
		}
		return nil
	}
	r.views[c.ID] = ContainerView{ID: c.ID, Name: c.Name, Image: c.ImageName, Route: r.routes[c.ID]}
	if why := r.live.Selection.Reason(c); why != "" {
		if r.routes[c.ID] != RouteExcluded {
			r.exclude(c.ID, why)
			r.log.Info("not shipping: not selected", "container", c.Name, "container_id", shortID(c.ID), "reason", why)
		}
		return nil
	}
	route := r.route(c)
	if old, ok := r.routes[c.ID]; ok && old == route && (route == RoutePlugin || route == RouteNone || route == RouteError) {
		return nil
	}
	log := r.log.With("container", c.Name, "container_id", shortID(c.ID), "route", route)
	if route == RoutePlugin || route == RouteNone {
		r.setRoute(c.ID, route)
		log.Info("not shipping: " + map[string]string{RoutePlugin: "the logferry plugin ships it", RouteNone: "log driver none"}[route])
		return nil
	}
	s, err := r.newShipper(c, route, log)
	if errors.Is(err, errRelabelDropped) {
		r.setRoute(c.ID, RouteDropped)
		log.Info("not shipping: loki-relabel-config drops this container")
		return nil
	}
	if err != nil {
		r.setRoute(c.ID, RouteError)
		r.m.startErrors.Inc()
		log.Error("not shipping this container", "err", err)
		return nil
	}
	s.fromOldest = fromOldest
	r.setRoute(c.ID, route)
	r.shippers[c.ID] = s
	sctx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	r.wg.Add(1)
	go r.supervise(ctx, sctx, s, c, log)
	log.Info("shipping")
	return s
}

// supervise runs s on its own context sctx (s.cancel ends it), then lets
// its container go: the endpoint, the series, the shipper's entry, a
// destroyed container's position; and ships the container's next run if
// it started again meanwhile. ctx is the Router's. It holds one count of
// r.wg, taken by its caller.
func (r *Router) supervise(ctx, sctx context.Context, s *shipper, c engine.Container, log *slog.Logger) {
	defer r.wg.Done()
	defer s.cancel()
	s.run(sctx)
	s.fan.Close()
	r.pool.Release(s.disp)
	log.Info("stopped shipping", "lines", s.lines)
	// Under r.mu: a new shipper of this name makes its series under
	// it, and an event for the container waits until the next run's
	// shipper (if any) is in place.
	r.mu.Lock()
	defer r.mu.Unlock()
	s.m.forget()
	if r.shippers[c.ID] == s {
		delete(r.shippers, c.ID)
		r.setRoute(c.ID, "")
	}
	// Destroyed: the destroy event left the position to this shipper
	// (it was registered until now).
	if s.destroyed.Load() {
		r.pos.Delete(c.ID)
		r.dirty()
	}
	next := r.again[c.ID]
	delete(r.again, c.ID)
	if next != nil && !s.destroyed.Load() && ctx.Err() == nil {
		// When this shipper stopped waiting for Loki (drain
		// timeout), its late acknowledgements must not move the
		// position under the next run's shipper, which starts from
		// the position saved now (so Loki may get those lines twice).
		s.gaveUp.Store(true)
		if ns := r.startLocked(ctx, next.c); ns != nil && next.died {
			ns.finish()
		}
	}
}

// setRoute keeps the routes gauge right. Called with r.mu held.
func (r *Router) setRoute(id, route string) {
	if old, ok := r.routes[id]; ok {
		r.m.containers.WithLabelValues(old).Dec()
		delete(r.routes, id)
		if why, ok := r.excluded[id]; ok {
			r.m.excluded.WithLabelValues(why).Dec()
			delete(r.excluded, id)
		}
	}
	if route == "" {
		delete(r.views, id)
		return
	}
	r.routes[id] = route
	r.m.containers.WithLabelValues(route).Inc()
	if v, ok := r.views[id]; ok {
		v.Route = route
		r.views[id] = v
	}
}

// exclude puts a container the selection leaves out on RouteExcluded.
// Called with r.mu held.
func (r *Router) exclude(id, why string) {
	r.setRoute(id, RouteExcluded)
	r.excluded[id] = why
	r.m.excluded.WithLabelValues(why).Inc()
}

// ContainerView is what the containers page shows of one container.
type ContainerView struct {
	ID, Name, Image string
	// Route is file or api (shipped), or why not: plugin, none,
	// excluded (see Reason), dropped (loki-relabel-config), error.
	Route  string
	Reason string // for excluded: an Excluded* reason
}

// Containers returns every running container the sidecar knows, by name.
func (r *Router) Containers() []ContainerView {
	r.mu.Lock()
	out := make([]ContainerView, 0, len(r.views))
	for id, v := range r.views {
		v.Reason = r.excluded[id]
		out = append(out, v)
	}
	r.mu.Unlock()
	slices.SortFunc(out, func(a, b ContainerView) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	return out
}

// finish tells a container's shipper to read to the end and stop; without
// a shipper it forgets the container's route.
func (r *Router) finish(id string) {
	r.mu.Lock()
	s, ok := r.shippers[id]
	if !ok {
		r.setRoute(id, "")
	}
	if next := r.again[id]; next != nil {
		next.died = true // the replayed shipper reads to the end and stops
	}
	r.mu.Unlock()
	if ok {
		s.finish()
	}
}

// stopAll stops every shipper now (shutdown): positions stay where Loki's
// acceptance got them.
func (r *Router) stopAll() {
	r.mu.Lock()
	for _, s := range r.shippers {
		s.cancel()
	}
	r.mu.Unlock()
}

// Active returns the number of containers being shipped.
func (r *Router) Active() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.shippers)
}

func (r *Router) dirty() {
	select {
	case r.posDirty <- struct{}{}:
	default:
	}
}

// savePositions writes the positions soon after they change, at most 20
// times a second.
func (r *Router) savePositions(ctx context.Context) {
	limit := time.NewTicker(50 * time.Millisecond)
	defer limit.Stop()
	for {
		select {
		case <-r.posDirty:
		case <-ctx.Done():
			return
		}
		if wrote, err := r.pos.FlushChanged(); err != nil {
			r.log.Error("saving positions", "err", err)
		} else if wrote {
			r.m.positionsSaved.Inc()
		}
		r.m.positions.Set(float64(r.pos.Len()))
		select {
		case <-limit.C:
		case <-ctx.Done():
			return
		}
	}
}

// newShipper prepares what shipping c needs. Called with r.mu held.
func (r *Router) newShipper(c engine.Container, route string, log *slog.Logger) (*shipper, error) {
	opts, refused, err := r.live.ContainerOptions(c.Labels)
	if err != nil {
		return nil, err
	}
	for _, rf := range refused {
		r.m.labelRefused.WithLabelValues(rf.Option, rf.Reason).Inc()
		log.Warn("label not applied; shipping with the operator's setting", "label", LabelPrefix+rf.Option,
			"reason", rf.Reason, "err", rf.Err)
	}
	set, err := r.buildLabels(opts, c)
	if err != nil && len(c.Labels) > 0 {
		// The labels that were applied validate on their own but not with
		// this container's metadata: ship with the operator's options.
		operator, _, oerr := r.live.ContainerOptions(nil)
		if oerr != nil {
			return nil, oerr
		}
		r.m.labelRefused.WithLabelValues("all", "build_failed").Inc()
		log.Warn("the container's logferry.* labels did not build its label set; shipping with the operator's options", "err", err)
		opts = operator
		set, err = r.buildLabels(opts, c)
	}
	if err != nil {
		return nil, err
	}
	if set.Dropped {
		return nil, errRelabelDropped
	}
	disp, err := r.pool.Acquire(opts.Loki)
	if err != nil {
		return nil, fmt.Errorf("loki endpoint: %w", err)
	}
	s := &shipper{
		r: r, c: c, route: route, opts: opts, set: set, disp: disp, log: log,
		m: r.m.forContainer(c.Name), finishCh: make(chan struct{}), resolved: make(chan struct{}),
	}
	s.pipe = pipeline.NewStep(pipeline.StepConfig{Pipeline: opts.Pipeline, Multiline: opts.MultilineConfig(),
		Metrics: r.m.pipeline, Set: &s.set, MaxLine: opts.MaxLineSize,
		Guard: r.cfg.Guards.For(opts.Loki.Key()), AckFloor: -1, InvalidUTF8: r.m.invalidUTF8})
	// Through a Fanout always: a tenant stage may choose tenants, and a
	// reload may move the container to another endpoint while it runs.
	s.fan = loki.NewFanout(r.pool, disp, s, r.m.pipeline.TenantOverflow())
	return s, nil
}

func (r *Router) buildLabels(opts logopts.Options, c engine.Container) (labels.Set, error) {
	b, err := r.builder(opts)
	if err != nil {
		return labels.Set{}, err
	}
	set, err := b.Build(c.Container)
	if err != nil {
		return labels.Set{}, err
	}
	r.m.labelValuesTruncated.Add(float64(set.Cuts.ValuesTruncated))
	r.m.labelsDropped.Add(float64(set.Cuts.LabelsDropped))
	return set, nil
}

// errRelabelDropped: the container's label set says not to ship it.
var errRelabelDropped = errors.New("loki-relabel-config drops the container")

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
