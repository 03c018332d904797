package backend

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// The checker catches an inversion: a token lock held, then a credential lock asked
// for. It panics before waiting, so the test never deadlocks, and the ranks the
// goroutine holds are as before.
func TestLockOrderCatchesInversion(t *testing.T) {
	if !lockOrderChecked {
		t.Skip("the lock order is checked in race builds (go test -race)")
	}
	b := newBackend(nil)
	err := b.tokens.withLock("a", func(tokenHeld) error {
		defer func() {
			r := recover()
			var le lockOrderError
			if e, ok := r.(error); !ok || !errors.As(e, &le) || le.want != rankCredential || le.held != rankToken {
				t.Errorf("recovered %v, want a lockOrderError credential-under-token", r)
			}
		}()
		_, unlock := b.credentials.lock("a")
		unlock()
		t.Error("a credential lock was taken under a token lock")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, first := lockInversionsSeen(); n != 1 || first == nil {
		t.Errorf("inversions recorded: %d (%v), want the one raised", n, first)
	}
	resetLockInversions() // raised on purpose: TestMain must not fail the run for it
	// The order the engine keeps passes, and nothing stays recorded.
	h, unlockC := b.credentials.lock("a")
	_, unlockD := b.devices.lock(h, "k1", "k2")
	_ = b.tokens.withLock("a", func(tokenHeld) error {
		var mu sync.Mutex
		lockRanked(rankConfig, &mu)()
		return nil
	})
	unlockD()
	unlockC()
	lockHeldEmpty(t)
}

// lockHeldEmpty fails when the checker still records a lock for this goroutine.
func lockHeldEmpty(t *testing.T) {
	t.Helper()
	// A lock of the outermost rank is allowed only when nothing later is held.
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("a lock is still recorded as held: %v", r)
		}
	}()
	var mu sync.Mutex
	lockRanked(rankConfigWrite, &mu)()
}

// A held-lock proof is made only where its lock is taken: a tokenHeld by
// tokenStore.withLock (tokenstore.go), a credentialHeld by credentialStore.lock
// (credential.go). A function that takes one then runs under that lock: the compiler
// checks the parameter, this test the one place that makes the value. An empty
// literal (the zero value an error return carries) names no credential and is allowed.
func TestHeldLocksOnlyFromTheirLock(t *testing.T) {
	makers := map[string]string{"tokenHeld": "tokenstore.go withLock", "credentialHeld": "credential.go lock", "deviceHeld": "device_index.go lock"}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			where := name
			if fd, ok := d.(*ast.FuncDecl); ok {
				where += " " + fd.Name.Name
			}
			ast.Inspect(d, func(n ast.Node) bool {
				lit, isLit := n.(*ast.CompositeLit)
				if !isLit || len(lit.Elts) == 0 {
					return true
				}
				if id, isID := lit.Type.(*ast.Ident); isID && makers[id.Name] != "" && makers[id.Name] != where {
					t.Errorf("%s: a %s is made in %s, not only in %s", fset.Position(lit.Pos()), id.Name, where, makers[id.Name])
				}
				return true
			})
		}
	}
}

// The device index changes an entry only under its key's lock: a proof for other keys
// is refused and changes nothing.
func TestDeviceIndexRefusesAnUnheldKey(t *testing.T) {
	b, s, _ := newTestBackend(t)
	ctx := context.Background()
	credWantStatus(t, b, s, logical.CreateOperation, "credentials/dev1", credWithType("device_account", exampleValues(t, "device_account", "DEVICEKEYLOCK")), 0)
	c, err := b.credentials.get(ctx, s, "dev1")
	if err != nil || c == nil {
		t.Fatalf("reading the device account: %v", err)
	}
	key := c.deviceIndexKey()
	before := credStorageSnapshot(t, s)
	if _, ok := before[key]; !ok {
		t.Fatalf("no index entry at %s", key)
	}
	h, unlock := b.credentials.lock(c.Name)
	defer unlock()
	other, unlockOther := b.devices.lock(h, "some-other-key")
	if err := b.devices.claim(ctx, s, other, c); !errors.Is(err, errDeviceKeyNotHeld) {
		t.Fatalf("claim under another key's lock: %v, want errDeviceKeyNotHeld", err)
	}
	if err := b.devices.release(ctx, s, other, key, c.Name); !errors.Is(err, errDeviceKeyNotHeld) {
		t.Fatalf("release under another key's lock: %v, want errDeviceKeyNotHeld", err)
	}
	unlockOther()
	if after := credStorageSnapshot(t, s); !maps.Equal(before, after) {
		t.Fatal("a refused claim or release changed storage")
	}
	dh, unlockDevice := b.devices.lock(h, key)
	defer unlockDevice()
	if err := b.devices.release(ctx, s, dh, key, c.Name); err != nil {
		t.Fatalf("release under its lock: %v", err)
	}
	if _, ok := credStorageSnapshot(t, s)[key]; ok {
		t.Fatal("the entry stayed after a release under its lock")
	}
}

// Two locks of one rank taken one after the other are an inversion too (either order
// of two names would deadlock against the other), as is the flush lock under a
// credential's: the checker catches both.
func TestLockOrderCatchesSameRankAndFlush(t *testing.T) {
	if !lockOrderChecked {
		t.Skip("the lock order is checked in race builds (go test -race)")
	}
	defer resetLockInversions() // raised on purpose
	b := newBackend(nil)
	caught := func(f func()) (le lockOrderError) {
		defer func() {
			if e, ok := recover().(lockOrderError); ok {
				le = e
			}
		}()
		f()
		return lockOrderError{}
	}
	_, unlockA := b.credentials.lock("a")
	if le := caught(func() { _, u := b.credentials.lock("b"); u() }); le.want != rankCredential || le.held != rankCredential {
		t.Errorf("a second credential lock under the first: %v, want it caught", le)
	}
	if le := caught(func() { lockRanked(rankFlush, &b.activity.flushMu)() }); le.want != rankFlush || le.held != rankCredential {
		t.Errorf("the flush lock under a credential lock: %v, want it caught", le)
	}
	unlockA()
	lockHeldEmpty(t)
}
