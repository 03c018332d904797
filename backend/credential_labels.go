// The credential store's secondary index: names by type and by tag, so that a list
// filtered by either costs the page it returns, not a pass over every name.

package backend

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
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
	// tagsOf is what each tagged name is filed under: by the name's id, the id of its
	// tag set in sets (0 for none). The index holds a reference to the id of every
	// name with a set, so the id names it until it is unfiled. Most credentials share
	// their tags with many others, so a tagged name costs 4 bytes here, not a map
	// entry and a slice of its own. A name's type needs no such record: there are few
	// types, and unfiling looks the name up in each list.
	tagsOf []uint32
	// sets are the distinct tag sets names are filed under, by id (sets[0] is the
	// empty set, never used); setIDs finds a set's id by its key. A set is freed when
	// its last name leaves it, and its id reused (freeSets), so sets follow the tag
	// combinations live credentials carry, however many were ever filed.
	sets     []tagSet
	setIDs   map[string]uint32
	freeSets []uint32
	pending  map[string]struct{} // names whose labels are unknown here
	// filling is set once a scan has started: only from then on must an invalidated
	// name be kept pending (a node that never scans keeps no such list).
	filling, complete bool
}

type taggedNames struct {
	tag   string // shared by every credential filed under it
	names []uint32
}

// tagSet is a set of tags names are filed under: the lists of its tags, sorted by
// tag, and how many names are filed under it. While a name is filed under a set it is
// in each of its lists, so none of them is empty or dropped from byTag.
type tagSet struct {
	key  string // setKey of its tags; "" for a free set
	tags []*taggedNames
	refs uint32
}

func newLabelIndex(tab *names.Table) *labelIndex {
	return &labelIndex{
		names:  tab,
		byType: map[*credtype.Type][]uint32{}, byTag: map[string]*taggedNames{},
		sets:    make([]tagSet, 1),
		setIDs:  map[string]uint32{},
		pending: map[string]struct{}{},
	}
}

// file files name under its type and tags, replacing what it was filed under. Only
// the lists name joins or leaves change: filing a name as it is filed already (most
// writes: a flush renewing a window, a state change) moves no list and allocates
// nothing, and a retag moves only the lists of the tags it adds or drops.
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
	id, oldSet := x.setOf(name)
	old := x.sets[oldSet].tags
	if oldSet != 0 && sameTags(old, tags) {
		return
	}
	// filed is on the stack for a name with up to 8 tags: internSetLocked copies it
	// when it makes a new set.
	var buf [8]*taggedNames
	filed := buf[:0]
	for _, tag := range tags {
		tn := x.byTag[tag]
		if tn == nil {
			tn = &taggedNames{tag: tag}
			x.byTag[tag] = tn
		}
		if slices.Contains(filed, tn) {
			continue // a tag given twice is filed once
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
	switch {
	case len(filed) == 0 && oldSet != 0:
		x.dropSetLocked(id, oldSet)
	case len(filed) == 0:
	case oldSet == 0:
		// The name's first set: a reference keeps its id naming it while tagsOf
		// holds the set by that id.
		id = x.names.Acquire(name)
		if int(id) >= len(x.tagsOf) {
			x.tagsOf = append(x.tagsOf, make([]uint32, int(id)+1-len(x.tagsOf))...)
		}
		x.tagsOf[id] = x.internSetLocked(filed)
	default:
		x.tagsOf[id] = x.internSetLocked(filed)
		x.releaseSetLocked(oldSet)
	}
}

// setOf returns name's id and the id of the tag set it is filed under, or 0 for the
// set when it has none. The caller holds x.mu. An id found in the table is name's own
// for as long as x.mu is held when tagsOf holds a set by it: the index holds a
// reference to it then. Otherwise the index holds no set for name (it would hold its
// id, and the table would have returned that id).
func (x *labelIndex) setOf(name string) (id, set uint32) {
	id, ok := x.names.Lookup(name)
	if !ok || int(id) >= len(x.tagsOf) || x.tagsOf[id] == 0 {
		return 0, 0
	}
	return id, x.tagsOf[id]
}

// sameTags reports whether tags, as a set, are the tags of the lists in filed.
func sameTags(filed []*taggedNames, tags []string) bool {
	for _, tag := range tags {
		if !slices.ContainsFunc(filed, func(tn *taggedNames) bool { return tn.tag == tag }) {
			return false
		}
	}
	for _, tn := range filed {
		if !slices.Contains(tags, tn.tag) {
			return false
		}
	}
	return true
}

// setKey is the key of a set of tag lists, sorted by tag: each tag with its length
// before it, so that no two sets share a key whatever bytes their tags hold.
func setKey(sorted []*taggedNames) string {
	return string(appendSetKey(nil, sorted))
}

func appendSetKey(b []byte, sorted []*taggedNames) []byte {
	for _, tn := range sorted {
		b = binary.AppendUvarint(b, uint64(len(tn.tag)))
		b = append(b, tn.tag...)
	}
	return b
}

// internSetLocked returns the id of the set of filed (no list twice), taking a
// reference to it: the set filed with the same tags already, or a new one. Finding
// the set allocates nothing for a key of up to 64 bytes.
func (x *labelIndex) internSetLocked(filed []*taggedNames) uint32 {
	slices.SortFunc(filed, func(a, b *taggedNames) int { return strings.Compare(a.tag, b.tag) })
	var buf [64]byte
	key := appendSetKey(buf[:0], filed)
	if id, ok := x.setIDs[string(key)]; ok {
		x.sets[id].refs++
		return id
	}
	var id uint32
	if n := len(x.freeSets); n > 0 {
		id = x.freeSets[n-1]
		x.freeSets = x.freeSets[:n-1]
	} else {
		id = uint32(len(x.sets)) //nolint:gosec // G115: fewer sets than names, and fewer than 2^32 names
		x.sets = append(x.sets, tagSet{})
	}
	x.sets[id] = tagSet{key: string(key), tags: slices.Clone(filed), refs: 1}
	x.setIDs[x.sets[id].key] = id
	return id
}

// releaseSetLocked drops a reference to set; the last one frees it for reuse, so the
// sets held follow the tags live credentials carry.
func (x *labelIndex) releaseSetLocked(set uint32) {
	if x.sets[set].refs--; x.sets[set].refs > 0 {
		return
	}
	delete(x.setIDs, x.sets[set].key)
	x.sets[set] = tagSet{}
	x.freeSets = append(x.freeSets, set)
}

// dropSetLocked forgets that the name of id is filed under set (it left the set's
// lists already) and releases the name's id.
func (x *labelIndex) dropSetLocked(id, set uint32) {
	x.tagsOf[id] = 0
	x.releaseSetLocked(set)
	x.names.Release(id)
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
	id, set := x.setOf(name)
	if set == 0 {
		return
	}
	for _, tn := range x.sets[set].tags {
		x.leaveTagLocked(tn, name)
	}
	x.dropSetLocked(id, set)
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
