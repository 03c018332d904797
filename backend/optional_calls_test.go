package backend

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/pluginutil"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/rotation"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// unimplemented is what a Vault server without a system call answers a plugin: the
// gRPC status Unimplemented, as the open-source fork answers calls it lacks.
func unimplemented(call string) error {
	return status.Error(codes.Unimplemented, "unknown method "+call)
}

// forkSystemView is a system view whose optional calls — plugin identity tokens,
// rotation jobs, and the rest the engine has no need of — all answer Unimplemented,
// counting how often each is made.
type forkSystemView struct {
	logical.StaticSystemView
	calls atomic.Int64
}

func (v *forkSystemView) missing(call string) error {
	v.calls.Add(1)
	return unimplemented(call)
}

func (v *forkSystemView) GenerateIdentityToken(context.Context, *pluginutil.IdentityTokenRequest) (*pluginutil.IdentityTokenResponse, error) {
	return nil, v.missing("GenerateIdentityToken")
}

func (v *forkSystemView) GetRotationInformation(context.Context, *rotation.RotationInfoRequest) (*rotation.RotationInfoResponse, error) {
	return nil, v.missing("GetRotationInformation")
}

func (v *forkSystemView) RegisterRotationJob(context.Context, *rotation.RotationJobConfigureRequest) (string, error) {
	return "", v.missing("RegisterRotationJob")
}

func (v *forkSystemView) RegisterRotationJobWithResponse(context.Context, *rotation.RotationJobConfigureRequest) (*rotation.RotationInfo, error) {
	return nil, v.missing("RegisterRotationJobWithResponse")
}

func (v *forkSystemView) DeregisterRotationJob(context.Context, *rotation.RotationJobDeregisterRequest) error {
	return v.missing("DeregisterRotationJob")
}

func (v *forkSystemView) PluginEnv(context.Context) (*logical.PluginEnvironment, error) {
	return nil, v.missing("PluginEnv")
}

func (v *forkSystemView) VaultVersion(context.Context) (string, error) {
	return "", v.missing("VaultVersion")
}

func (v *forkSystemView) ClusterID(context.Context) (string, error) {
	return "", v.missing("ClusterID")
}

func (v *forkSystemView) EntityInfo(string) (*logical.Entity, error) {
	return nil, v.missing("EntityInfo")
}

func (v *forkSystemView) GroupsForEntity(string) ([]*logical.Group, error) {
	return nil, v.missing("GroupsForEntity")
}

func (v *forkSystemView) GeneratePasswordFromPolicy(context.Context, string) (string, error) {
	return "", v.missing("GeneratePasswordFromPolicy")
}

// forkEvents is the events service of a server without event support.
type forkEvents struct{ calls atomic.Int64 }

func (e *forkEvents) SendEvent(context.Context, logical.EventType, *logical.EventData) error {
	e.calls.Add(1)
	return unimplemented("SendEvent")
}

// On a server whose optional calls answer Unimplemented the engine works — create,
// access (static and OAuth), the lifecycle sweep, suspend and unsuspend by hand —
// fails nothing, and logs each missing capability once, however often it is met:
// event sending is the one optional call the engine makes (Vault events beside the
// log line and the notify credential); it makes none of the others (plugin identity
// tokens, rotation jobs), and is asserted not to.
func TestRunsWhereOptionalCallsAreMissing(t *testing.T) {
	t.Parallel()
	sys := &forkSystemView{StaticSystemView: logical.StaticSystemView{DefaultLeaseTTLVal: time.Hour, MaxLeaseTTLVal: 24 * time.Hour}}
	events := &forkEvents{}
	logs := &lcLogBuffer{}
	b, s, clock := newBackendWith(t, backendOptions{system: sys, events: events, logs: logs, initialize: true})
	p := newTestProvider(t, providerConfig{})
	mustOK(t, b, s, logical.CreateOperation, "credentials/cc", clientCredentials(p, "body"))
	for _, name := range []string{"idle-a", "idle-b", "idle-c"} {
		lcCreateBasic(t, b, s, name, nil)
	}
	lcCreateBasic(t, b, s, "busy", nil)

	sweep := func() {
		t.Helper()
		if err := b.periodic(context.Background(), &logical.Request{Storage: s}); err != nil {
			t.Fatalf("the sweep failed: %v", err)
		}
	}
	for range 2 {
		clock.Advance(90 * day) // a suspension warning, then the suspension, of each idle one
		accessOK(t, b, s, "cc", nil)
		mustOK(t, b, s, logical.ReadOperation, "access/busy", nil)
		sweep()
	}
	for _, name := range []string{"idle-a", "idle-b", "idle-c"} {
		if resp, err := request(b, s, logical.ReadOperation, "access/"+name, nil); err == nil && !resp.IsError() {
			t.Fatalf("%s is still handed out after its suspension", name)
		}
	}
	mustOK(t, b, s, logical.UpdateOperation, "credentials/busy/suspend", nil)
	if resp, err := request(b, s, logical.ReadOperation, "access/busy", nil); err == nil && !resp.IsError() {
		t.Fatal("busy is handed out while suspended by hand")
	}
	mustOK(t, b, s, logical.UpdateOperation, "credentials/busy/unsuspend", nil)
	mustOK(t, b, s, logical.ReadOperation, "access/busy", nil)
	if tok := accessOK(t, b, s, "cc", nil).Data["access_token"]; tok == "" {
		t.Fatal("no token")
	}

	if n := events.calls.Load(); n < 6 {
		t.Fatalf("%d event sends; the sweep's six announcements should each have tried one", n)
	}
	if n := sys.calls.Load(); n != 0 {
		t.Fatalf("%d calls to an optional system call the engine is not known to make", n)
	}
	out := logs.String()
	if n := strings.Count(out, "does not support Vault events"); n != 1 {
		t.Fatalf("the missing event support was logged %d times over %d sends, want once:\n%s", n, events.calls.Load(), out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "[ERROR]") {
			t.Errorf("error logged: %s", line)
		}
	}
}
