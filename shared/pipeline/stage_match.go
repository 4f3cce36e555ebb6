package pipeline

import (
	"errors"

	"go.yaml.in/yaml/v3"
)

// matchStage runs its stages, or drops the entry (action drop), when the
// entry's current labels and line match the selector.
type matchStage struct {
	sel    *selector
	drop   bool
	reason string
	stages []stage
}

func compileMatch(ps *parser, at *position, n *yaml.Node) (stage, error) {
	fs, err := ps.fields(at, n, "selector", "stages", "action", "drop_counter_reason", "pipeline_name")
	if err != nil {
		return nil, err
	}
	text, err := ps.required(at, "selector", fs)
	if err != nil {
		return nil, err
	}
	if len(text) > MaxExpressionBytes {
		return nil, ps.errorf(at, "selector", fs["selector"].Line, overLimit("%d bytes, more than %d", len(text), MaxExpressionBytes))
	}
	s := &matchStage{}
	if s.sel, err = parseSelector(text); err != nil {
		return nil, ps.errorf(at, "selector", fs["selector"].Line, err)
	}
	// pipeline_name names a Promtail histogram logferry does not have;
	// it is accepted and checked to be a string.
	if _, err := ps.str(at, "pipeline_name", fs["pipeline_name"]); err != nil {
		return nil, err
	}
	action, err := ps.str(at, "action", fs["action"])
	if err != nil {
		return nil, err
	}
	switch action {
	case "", "keep":
	case "drop":
		s.drop = true
	default:
		return nil, ps.errorf(at, "action", fs["action"].Line, errors.New("want keep or drop"))
	}
	stagesNode := fs["stages"]
	hasStages := stagesNode != nil && !isNull(stagesNode)
	switch {
	case s.drop && hasStages:
		return nil, ps.errorf(at, "stages", stagesNode.Line, errors.New("not allowed with action drop"))
	case !s.drop && !hasStages:
		return nil, ps.errorf(at, "stages", n.Line, errors.New("required with action keep"))
	}
	if s.drop {
		if s.reason, err = ps.reason(at, "drop_counter_reason", fs["drop_counter_reason"], ReasonMatchStage); err != nil {
			return nil, err
		}
		return s, nil
	}
	if _, given := fs["drop_counter_reason"]; given {
		return nil, ps.errorf(at, "drop_counter_reason", fs["drop_counter_reason"].Line, errors.New("only with action drop"))
	}
	if at.depth() >= MaxDepth {
		return nil, ps.errorf(at, "stages", stagesNode.Line, overLimit("match stages nested more than %d deep", MaxDepth-1))
	}
	if stagesNode.Kind != yaml.SequenceNode || len(stagesNode.Content) == 0 {
		return nil, ps.errorf(at, "stages", stagesNode.Line, errors.New("want a non-empty list of stages"))
	}
	if s.stages, err = ps.stageList(at, stagesNode.Content, 0); err != nil {
		return nil, err
	}
	return s, nil
}

func (*matchStage) kind() kind { return kindMatch }

func (s *matchStage) run(p *Pipeline, e *Entry) {
	if !s.sel.matches(e) {
		return
	}
	if s.drop {
		p.drop(e, s.reason)
		return
	}
	p.runStages(s.stages, e)
}
