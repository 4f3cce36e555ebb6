package labels

import "testing"

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
		if got := title(tt.s); got != tt.want {
			t.Errorf("title(%q) = %q, want %q", tt.s, got, tt.want)
		}
	}
}

func TestPad(t *testing.T) {
	tests := []struct {
		s              string
		prefix, suffix int
		want           string
	}{
		{"", 2, 2, ""}, // Docker pads only non-empty values
		{"a", 1, 2, " a  "},
		{"a", -1, 0, "a"}, // Docker would panic
	}
	for _, tt := range tests {
		if got := pad(tt.s, tt.prefix, tt.suffix); got != tt.want {
			t.Errorf("pad(%q, %d, %d) = %q, want %q", tt.s, tt.prefix, tt.suffix, got, tt.want)
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
