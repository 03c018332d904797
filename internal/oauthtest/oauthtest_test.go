package oauthtest

import "testing"

// The package's tests against the standard-library server (the end-to-end module
// runs them against go-oauth2's).
func TestStdServer(t *testing.T) { RunServerTests(t, NewStdServer) }
