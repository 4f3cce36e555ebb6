package loki

import (
	"strings"
	"testing"
	"time"
)

// The hook returns memory once per its interval, however many dispatchers
// call it.
func TestReturnMemoryAfterBacklogOncePerInterval(t *testing.T) {
	var out syncLog
	hook := ReturnMemoryAfterBacklog(time.Hour, out.logger())
	for range 5 {
		hook()
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "gave the memory it took back") {
		if time.Now().After(deadline) {
			t.Fatal("the hook never returned memory")
		}
		time.Sleep(5 * time.Millisecond)
	}
	hook()
	time.Sleep(50 * time.Millisecond)
	if n := strings.Count(out.String(), "gave the memory"); n != 1 {
		t.Fatalf("memory returned %d times within the interval, want 1:\n%s", n, out.String())
	}
}
