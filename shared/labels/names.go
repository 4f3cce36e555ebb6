package labels

import (
	"strings"
	"unicode/utf8"
)

// IsValidLabelName reports whether name is a Loki label name we emit:
// [a-zA-Z_][a-zA-Z0-9_]*. (Loki also accepts ':', which Prometheus reserves
// for recording rules; we never produce it.)
func IsValidLabelName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if !isNameByte(name[i], i == 0) {
			return false
		}
	}
	return true
}

func isNameByte(b byte, first bool) bool {
	return b == '_' || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (!first && b >= '0' && b <= '9')
}

// SanitizeLabelName turns a container label key or environment variable
// name into a Loki label name:
//
//   - every character outside [a-zA-Z0-9_] becomes one '_' (a multi-byte
//     character, or an invalid byte, is one character), so
//     "com.example.team" becomes "com_example_team" and "app-tier"
//     becomes "app_tier", exactly what Grafana's Loki driver makes of '.'
//     and '-' (the only characters it replaces);
//   - a name starting with a digit gets a leading '_' ("2fa" -> "_2fa");
//   - a leading run of underscores is cut to one, because names starting
//     with "__" are reserved for Prometheus' and Loki's internal labels
//     ("__meta" -> "_meta", "--x" -> "_x").
//
// It returns "" only for "". Different keys can sanitize to the same name;
// Builder.Build resolves that deterministically (see Builder).
func SanitizeLabelName(key string) string {
	if key == "" {
		return ""
	}
	if IsValidLabelName(key) && !strings.HasPrefix(key, "__") {
		return key
	}
	var b strings.Builder
	b.Grow(len(key) + 1)
	for i, r := range key {
		switch {
		case r < utf8.RuneSelf && isNameByte(byte(r), false):
			if i == 0 && r >= '0' && r <= '9' {
				b.WriteByte('_')
			}
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	for strings.HasPrefix(s, "__") {
		s = s[1:]
	}
	return s
}

// sanitizeValue makes v valid UTF-8, which Loki requires of label values
// (the Loki driver rejects the container instead; we would rather ship it).
func sanitizeValue(v string) string {
	if utf8.ValidString(v) {
		return v
	}
	return strings.ToValidUTF8(v, "\uFFFD")
}
