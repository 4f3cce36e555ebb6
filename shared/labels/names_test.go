package labels

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestIsValidLabelName(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"a", true},
		{"_", true},
		{"container_name", true},
		{"A9_z", true},
		{"__reserved", true}, // valid syntax; reserved is a separate rule
		{"", false},
		{"9a", false},
		{"a-b", false},
		{"a.b", false},
		{"a:b", false}, // Loki accepts ':', we never emit it
		{"é", false},
		{"a b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsValidLabelName(tt.name); got != tt.want {
				t.Errorf("IsValidLabelName(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

func TestSanitizeLabelName(t *testing.T) {
	tests := []struct {
		key, want string
	}{
		{"", ""},
		{"team", "team"},
		{"com.example.team", "com_example_team"},
		{"app-tier", "app_tier"},
		{"org.opencontainers.image.source", "org_opencontainers_image_source"},
		{"a/b:c d", "a_b_c_d"},
		{"2fa", "_2fa"},
		{"9", "_9"},
		{"é", "_"}, // one multi-byte rune, one '_'
		{"café.bar", "caf__bar"},
		{"日本", "_"},         // two runes, "__", reserved prefix cut to "_"
		{"\xff\xfe", "_"},   // invalid bytes, each one '_', then cut
		{"__meta", "_meta"}, // reserved prefix
		{"___x", "_x"},
		{"--x", "_x"},
		{"_x", "_x"},
		{".", "_"},
		{"MY_ENV", "MY_ENV"},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			got := SanitizeLabelName(tt.key)
			if got != tt.want {
				t.Errorf("SanitizeLabelName(%q) = %q, want %q", tt.key, got, tt.want)
			}
			if got != "" && !IsValidLabelName(got) {
				t.Errorf("SanitizeLabelName(%q) = %q, not a valid name", tt.key, got)
			}
		})
	}
}

func TestSanitizeLabelNameAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _ = SanitizeLabelName("already_valid") }); n != 0 {
		t.Errorf("valid name allocates %v times, want 0", n)
	}
}

func TestTruncateBytes(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"abcdef", 3, "abc"},
		{"abc", 3, "abc"},
		{"ab", 3, "ab"},
		{"abc", 0, ""},
		{"abc", -1, ""},
		{"aé", 2, "a"}, // would split é
		{"aé", 3, "aé"},
	}
	for _, tt := range tests {
		if got := truncateBytes(tt.s, tt.n); got != tt.want {
			t.Errorf("truncateBytes(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

func TestTitle(t *testing.T) {
	tests := []struct{ s, want string }{
		{"", ""},
		{"web", "Web"},
		{"hello world", "Hello World"},
		{"my-app.v2", "My-App.V2"},
		{"snake_case", "Snake_case"},
		{"élan vital", "Élan Vital"},
	}
	for _, tt := range tests {
		if got, err := title(tt.s); got != tt.want || err != nil {
			t.Errorf("title(%q) = %q, %v; want %q", tt.s, got, err, tt.want)
		}
	}
}

func TestPad(t *testing.T) {
	tests := []struct {
		s              string
		prefix, suffix int
		want           string
		wantErr        error
	}{
		{s: "", prefix: 2, suffix: 2, want: ""}, // Docker pads only non-empty values
		{s: "a", prefix: 1, suffix: 2, want: " a  "},
		{s: "a", prefix: -1, want: "a"}, // Docker would panic
		{s: "a", prefix: MaxLabelValueBytes, want: strings.Repeat(" ", MaxLabelValueBytes) + "a"},
		{s: "a", prefix: MaxLabelValueBytes + 1, wantErr: ErrLimit},
		{s: "a", prefix: MaxLabelValueBytes, suffix: 1, wantErr: ErrLimit},
		{s: "", prefix: 1 << 30, wantErr: ErrLimit}, // refused even where Docker would pad nothing
		{s: "a", prefix: math.MaxInt, suffix: math.MaxInt, wantErr: ErrLimit},
		{s: "a", prefix: 1, suffix: math.MaxInt, wantErr: ErrLimit},
		{s: strings.Repeat("x", maxTemplateString), prefix: 1, wantErr: ErrLimit},
	}
	for _, tt := range tests {
		got, err := pad(tt.s, tt.prefix, tt.suffix)
		if got != tt.want || !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
			t.Errorf("pad(%.10q, %d, %d) = %.10q, %v; want %.10q, %v", tt.s, tt.prefix, tt.suffix, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestJSONString(t *testing.T) {
	got, err := jsonString(map[string]string{"a": "<b>"})
	if err != nil || got != `{"a":"<b>"}` {
		t.Errorf("jsonString = %q, %v; want no HTML escaping and no newline", got, err)
	}
	if _, err := jsonString(make(chan int)); err == nil {
		t.Error("jsonString(chan) succeeded")
	}
}
