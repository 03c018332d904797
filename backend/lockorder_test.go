package backend

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"sync"
	"testing"
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
	_, unlockC := b.credentials.lock("a")
	unlockD := b.devices.lock("k1", "k2")
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
	makers := map[string]string{"tokenHeld": "tokenstore.go withLock", "credentialHeld": "credential.go lock"}
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
