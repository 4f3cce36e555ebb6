package engine

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/logferry/logferry/internal/dockertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		dockertest.Shutdown()
		os.Exit(code)
	}))
}
