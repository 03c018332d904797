// The credential store's secondary index: names by type and by tag, so that a list
// filtered by either costs the page it returns, not a pass over every name.

package backend

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/credtype"
	"github.com/vault-plugin-secrets-integrations/vault-plugin-secrets-integrations/backend/names"
)

// labelIndex files credential names under their type and each of their tags, each
// list sorted. The store keeps it in step with every put, remove and invalidation, and
// the background index scan (buildIndex) files the credentials already stored. Until a
// scan has run to its end the index is incomplete and lists do not use it; after, a
// credential changed by another node is pending (its labels are unknown here) until a
// filtered list reads it again, before that list answers.
//
// The lists hold names' ids in the mount's names table (a reference each), sorted by
// name: 4 bytes a filing, nothing for the garbage collector to scan. They are changed
// only with the table's Insert and Remove, under mu.
type labelIndex struct {
	mu     sync.RWMutex
	names  *names.Table
	byType map[*credtype.Type][]uint32
	byTag  map[string]*taggedNames
	// tagsOf is what each tagged name is filed under. A name's type needs no such
	// record: there are few types, and unfiling looks the name up in each list.
	tagsOf  map[string][]*taggedNames
	pending map[string]struct{} // names whose labels are unknown here
	// filling is set once a scan has started: only from then on must an invalidated
	// name be kept pending (a node that never scans keeps no such list).
	filling, complete bool
}

type taggedNames struct {
	tag   string // shared by every credential filed under it
	names []uint32
}

func newLabelIndex(tab *names.Table) *labelIndex {
	return &labelIndex{
		names:  tab,
		byType: map[*credtype.Type][]uint32{}, byTag: map[string]*taggedNames{},
		tagsOf:  map[string][]*taggedNames{},
		pending: map[string]struct{}{},
	}
}

// file files name under its type and tags, replacing what it was filed under. Only
// the lists name joins or leaves change: filing a name as it is filed already (most
// writes: a flush renewing a window, a state change) moves no list, and a retag moves
// only the lists of the tags it adds or drops.
func (x *labelIndex) file(name string, t *credtype.Type, tags []string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.pending, name)
	if t == nil {
		x.unfileTypeLocked(name)
	} else if _, found := x.search(x.byType[t], name); !found {
		x.unfileTypeLocked(name) // a name is filed under one type at most
		x.byType[t], _ = x.names.Insert(x.byType[t], name)
	}
	old := x.tagsOf[name]
	var filed []*taggedNames
	for _, tag := range tags {
		tn := x.byTag[tag]
		if tn == nil {
			tn = &taggedNames{tag: tag}
			x.byTag[tag] = tn
		}
		if !slices.Contains(old, tn) {
			tn.names, _ = x.names.Insert(tn.names, name)
		}
		filed = append(filed, tn)
	}
	for _, tn := range old {
		if !slices.Contains(filed, tn) {
			x.leaveTagLocked(tn, name)
		}
	}
	if filed == nil {
		delete(x.tagsOf, name)
	} else if !slices.Equal(filed, old) {
		x.tagsOf[name] = filed
	}
}

// intern returns tags with each tag the index holds replaced by the index's copy, so
// that the many credentials carrying a tag share one string; tags itself is not
// changed.
func (x *labelIndex) intern(tags []string) []string {
	if len(tags) == 0 {
		return tags
	}
	out := make([]string, len(tags))
	x.mu.RLock()
	defer x.mu.RUnlock()
	for i, tag := range tags {
		out[i] = tag
		if tn := x.byTag[tag]; tn != nil {
			out[i] = tn.tag
		}
	}
	return out
}

// unfile drops name: it was deleted.
func (x *labelIndex) unfile(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.unfileLocked(name)
	delete(x.pending, name)
}

// invalidate drops name and marks it pending: another node changed it, to what is not
// known here.
func (x *labelIndex) invalidate(name string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.unfileLocked(name)
	if x.filling {
		x.pending[name] = struct{}{}
	}
}

func (x *labelIndex) unfileLocked(name string) {
	x.unfileTypeLocked(name)
	for _, tn := range x.tagsOf[name] {
		x.leaveTagLocked(tn, name)
	}
	delete(x.tagsOf, name)
}

// unfileTypeLocked drops name from the list of its type, found among the few types.
func (x *labelIndex) unfileTypeLocked(name string) {
	for t, ids := range x.byType {
		if ids, found := x.names.Remove(ids, name); found {
			if x.byType[t] = ids; len(ids) == 0 {
				delete(x.byType, t)
			}
			return
		}
	}
}

func (x *labelIndex) leaveTagLocked(tn *taggedNames, name string) {
	if tn.names, _ = x.names.Remove(tn.names, name); len(tn.names) == 0 {
		delete(x.byTag, tn.tag)
	}
}

// markPending marks name to be read again before the index answers.
func (x *labelIndex) markPending(name string) {
	x.mu.Lock()
	x.pending[name] = struct{}{}
	x.mu.Unlock()
}

// startFill records that a scan of every stored credential begins: it lists them
// after this, so what was invalidated before is read by it.
func (x *labelIndex) startFill() {
	x.mu.Lock()
	x.filling = true
	x.mu.Unlock()
}

// markComplete records that a scan of every stored credential has filed each one.
func (x *labelIndex) markComplete() {
	x.mu.Lock()
	x.complete = true
	x.mu.Unlock()
}

// pendingNames returns the names whose labels must be read again, or ok false while
// the index is incomplete.
func (x *labelIndex) pendingNames() (names []string, ok bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if !x.complete {
		return nil, false
	}
	for n := range x.pending {
		names = append(names, n)
	}
	return names, true
}

// after returns up to n names filed under t (when not nil) and tag (when not ""),
// sorted, that sort after the given name; ok false while the index is incomplete or
// while a name is pending. With both filters it pages through the shorter list and
// keeps the names the other also holds.
func (x *labelIndex) after(t *credtype.Type, tag, after string, n int) (page []string, ok bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if !x.complete || len(x.pending) > 0 {
		return nil, false
	}
	var byType, byTag []uint32
	if t != nil {
		byType = x.byType[t]
	}
	if tag != "" {
		if tn := x.byTag[tag]; tn != nil {
			byTag = tn.names
		}
	}
	list, other := byType, byTag
	switch {
	case t == nil:
		list, other = byTag, nil
	case tag == "":
		other = nil
	case len(byTag) < len(byType):
		list, other = byTag, byType
	}
	i, found := x.search(list, after)
	if found {
		i++
	}
	page = []string{}
	for ; i < len(list) && len(page) < n; i++ {
		name := x.names.Name(list[i])
		if other != nil {
			if _, in := x.search(other, name); !in {
				continue
			}
		}
		page = append(page, name)
	}
	return page, true
}

// search finds name in ids, sorted by name, under one lock of the names table. The
// caller holds x.mu, and the index holds a reference to every id in its lists.
func (x *labelIndex) search(ids []uint32, name string) (int, bool) {
	return x.names.Search(ids, name)
}

// namesFiltered returns up to n names that sort after the given one, of type t (when
// not nil) and carrying tag (when not ""): from the label index when it is complete,
// so a page costs the names it returns, else every name (the caller checks each
// credential's type and tags either way). Names pending in the index are read again
// first.
func (cs *credentialStore) namesFiltered(ctx context.Context, s logical.Storage, t *credtype.Type, tag, after string, n int) ([]string, error) {
	if t == nil && tag == "" {
		return cs.namesAfter(ctx, s, after, n)
	}
	// Invalidations may keep arriving while the pending names are read: after a few
	// rounds the page comes from every name instead.
	for range 3 {
		pending, ok := cs.labels.pendingNames()
		if !ok {
			break
		}
		for _, name := range pending {
			if err := cs.refile(ctx, s, name); err != nil {
				return nil, err
			}
		}
		if page, ok := cs.labels.after(t, tag, after, n); ok {
			return page, nil
		}
	}
	return cs.namesAfter(ctx, s, after, n)
}

// refile reads name's type and tags again and files them, unless a put, remove or
// invalidation of its shard came meanwhile: then name is left pending, to be read
// again, as what was read may be older than what a racing write filed. An entry that
// cannot be decoded is filed under nothing: reads of it fail, and the index scan skips
// it alike.
func (cs *credentialStore) refile(ctx context.Context, s logical.Storage, name string) error {
	c, gen, err := cs.indexView(ctx, s, name)
	if err != nil && !errors.Is(err, errUndecodable) {
		return err
	}
	if !cs.ifUnchanged(name, gen, func() {
		if c == nil {
			cs.labels.unfile(name)
			return
		}
		cs.labels.file(name, c.typeDef(), c.Tags)
	}) {
		cs.labels.markPending(name)
	}
	return nil
}
