package pipeline

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// timestampStage sets the entry's time from an extracted value.
type timestampStage struct {
	source  string
	formats []timeFormat
	loc     *time.Location
	skip    bool // action_on_failure skip; default fudge
	slot    int  // index of the instance's last parsed time
}

// timeFormat is a Go layout or one of the Unix forms.
type timeFormat struct {
	layout string
	unix   int // 0: layout; else 1 (s), 1e3, 1e6, 1e9 units per second
	noYear bool
}

// namedFormats are Promtail's format names.
var namedFormats = map[string]string{
	"ANSIC":       time.ANSIC,
	"UnixDate":    time.UnixDate,
	"RubyDate":    time.RubyDate,
	"RFC822":      time.RFC822,
	"RFC822Z":     time.RFC822Z,
	"RFC850":      time.RFC850,
	"RFC1123":     time.RFC1123,
	"RFC1123Z":    time.RFC1123Z,
	"RFC3339":     time.RFC3339,
	"RFC3339Nano": time.RFC3339Nano,
}

var unixFormats = map[string]int{"Unix": 1, "UnixMs": 1e3, "UnixUs": 1e6, "UnixNs": 1e9}

func parseTimeFormat(f string) (timeFormat, error) {
	if u, ok := unixFormats[f]; ok {
		return timeFormat{unix: u}, nil
	}
	if l, ok := namedFormats[f]; ok {
		f = l
	}
	// A layout must hold at least one element of the reference time (a
	// time other than the reference one then formats differently from
	// the layout) and read back what it writes.
	ref := time.Date(2009, 11, 17, 20, 34, 58, 651387237, time.FixedZone("CET", 3600))
	out := ref.Format(f)
	if out == f {
		return timeFormat{}, fmt.Errorf("%q is neither a format name (RFC3339, Unix, UnixMs...) nor a Go layout (2006-01-02T15:04:05Z07:00)", f)
	}
	t, err := time.Parse(f, out)
	if err != nil {
		return timeFormat{}, fmt.Errorf("Go layout %q does not read what it writes: %w", f, err)
	}
	return timeFormat{layout: f, noYear: t.Year() == 0}, nil
}

func compileTimestamp(ps *parser, at *position, n *yaml.Node) (stage, error) {
	fs, err := ps.fields(at, n, "source", "format", "fallback_formats", "location", "action_on_failure")
	if err != nil {
		return nil, err
	}
	s := &timestampStage{loc: time.UTC}
	if s.source, err = ps.required(at, "source", fs); err != nil {
		return nil, err
	}
	format, err := ps.required(at, "format", fs)
	if err != nil {
		return nil, err
	}
	tf, err := parseTimeFormat(format)
	if err != nil {
		return nil, ps.errorf(at, "format", fs["format"].Line, err)
	}
	s.formats = append(s.formats, tf)
	fallbacks, err := ps.stringList(at, "fallback_formats", fs["fallback_formats"], false)
	if err != nil {
		return nil, err
	}
	for i, f := range fallbacks {
		tf, err := parseTimeFormat(f)
		if err != nil {
			return nil, ps.errorf(at, fmt.Sprintf("fallback_formats[%d]", i), fs["fallback_formats"].Line, err)
		}
		s.formats = append(s.formats, tf)
	}
	loc, err := ps.str(at, "location", fs["location"])
	if err != nil {
		return nil, err
	}
	if loc != "" {
		if s.loc, err = time.LoadLocation(loc); err != nil {
			return nil, ps.errorf(at, "location", fs["location"].Line, fmt.Errorf("want an IANA time zone (Europe/Berlin): %w", err))
		}
	}
	action, err := ps.str(at, "action_on_failure", fs["action_on_failure"])
	if err != nil {
		return nil, err
	}
	switch action {
	case "", "fudge":
	case "skip":
		s.skip = true
	default:
		return nil, ps.errorf(at, "action_on_failure", fs["action_on_failure"].Line, errors.New("want fudge or skip"))
	}
	s.slot = ps.prog.tsSlots
	ps.prog.tsSlots++
	return s, nil
}

func (*timestampStage) kind() kind { return kindTimestamp }

// run sets the time from the source. When the source is missing or does
// not parse in any format, fudge sets the last time this stage parsed plus
// 1ns (and counts the next fudge from there) so that entries keep their
// order; skip, or fudge before any time parsed, keeps the entry's time.
// Only values that do not parse are counted as errors.
func (s *timestampStage) run(p *Pipeline, e *Entry) {
	v, ok := e.getString(s.source)
	if ok {
		if t, ok := s.parse(p, v); ok {
			e.Time = t
			p.lastTime[s.slot] = t
			return
		}
		p.fail(kindTimestamp)
	}
	if s.skip {
		return
	}
	if last := p.lastTime[s.slot]; last != 0 {
		e.Time = last + 1
		p.lastTime[s.slot] = e.Time
	}
}

func (s *timestampStage) parse(p *Pipeline, v string) (int64, bool) {
	for _, f := range s.formats {
		if f.unix != 0 {
			if t, ok := parseUnix(v, f.unix); ok {
				return t, true
			}
			continue
		}
		t, err := time.ParseInLocation(f.layout, v, s.loc)
		if err != nil {
			continue
		}
		if f.noYear {
			t = t.AddDate(p.now().In(s.loc).Year(), 0, 0)
		}
		return t.UnixNano(), true
	}
	return 0, false
}

// parseUnix reads an integer count of 1/perSecond seconds; with Unix
// (perSecond 1) a fraction of up to nine digits is allowed.
func parseUnix(v string, perSecond int) (int64, bool) {
	v = strings.TrimSpace(v)
	whole, frac, hasFrac := strings.Cut(v, ".")
	if hasFrac && (perSecond != 1 || frac == "" || len(frac) > 9 || strings.TrimLeft(frac, "0123456789") != "") {
		return 0, false
	}
	n, err := strconv.ParseInt(whole, 10, 64)
	if err != nil {
		return 0, false
	}
	scale := int64(1e9 / perSecond)
	const maxNanos = 1<<63 - 1
	if n > maxNanos/scale || n < -maxNanos/scale {
		return 0, false
	}
	t := n * scale
	if hasFrac {
		f, _ := strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
		if n < 0 || strings.HasPrefix(whole, "-") {
			f = -f
		}
		t += f
	}
	return t, true
}
