/*
 * A restricted reader of the pickles torch.save writes for state dicts, and their writer.
 *
 * Nothing is executed. The reader is a small stack machine for the opcodes a state dict
 * uses (protocol 2 as torch writes it, and the few protocol 4 opcodes a pickle_protocol=4
 * save adds), with a whitelist of globals, each applied by its own C code:
 * collections.OrderedDict, torch._utils._rebuild_tensor_v2 (and _rebuild_tensor,
 * _rebuild_parameter, _rebuild_parameter_with_state), torch.Size and the typed storage
 * classes, which only appear inside persistent ids. Any other global, opcode, or a known
 * one used in another way is refused before anything else happens, naming it.
 *
 * Bounds: objects (and so memo entries, stack and container items) at most
 * ALCM_IO_PK_OBJECTS_PER_TENSOR * max_tensors + 4096 and never more than the pickle has
 * bytes; MARK nesting at most ALCM_IO_PK_MARKS; memo keys must come in sequence (as every
 * pickler writes them), so the memo never grows beyond the objects. Nothing is recursive
 * except the conversion of state_dict._metadata to JSON, bounded in depth and in the
 * number of values it visits (a DAG of shared containers cannot blow up).
 */
#include "io_internal.h"

#include <stdio.h>
#include <stdlib.h>

enum pk_type { PK_NONE, PK_BOOL, PK_INT, PK_STR, PK_TUPLE, PK_LIST, PK_DICT, PK_GLOBAL,
               PK_STORAGE, PK_TENSOR };

static const char *const type_names[] = {"None", "bool", "int", "str", "tuple", "list",
                                         "dict", "global", "storage", "tensor"};

enum pk_global { G_ORDERED_DICT, G_REBUILD_V2, G_REBUILD, G_REBUILD_PARAM,
                 G_REBUILD_PARAM_STATE, G_SIZE, G_STORAGE };

/* Typed storage classes (module "torch"), in the table order of alcm dtypes. */
static const struct {
	const char *name;
	int dtype;
} storages[] = {
	{"BoolStorage", ALCM_DTYPE_BOOL},   {"ByteStorage", ALCM_DTYPE_U8},
	{"CharStorage", ALCM_DTYPE_I8},     {"ShortStorage", ALCM_DTYPE_I16},
	{"IntStorage", ALCM_DTYPE_I32},     {"LongStorage", ALCM_DTYPE_I64},
	{"HalfStorage", ALCM_DTYPE_F16},    {"BFloat16Storage", ALCM_DTYPE_BF16},
	{"FloatStorage", ALCM_DTYPE_F32},   {"DoubleStorage", ALCM_DTYPE_F64},
};
#define NSTORAGES (sizeof(storages) / sizeof(storages[0]))

static const struct {
	const char *module, *name;
	int id;
} globals[] = {
	{"collections", "OrderedDict", G_ORDERED_DICT},
	{"torch._utils", "_rebuild_tensor_v2", G_REBUILD_V2},
	{"torch._utils", "_rebuild_tensor", G_REBUILD},
	{"torch._utils", "_rebuild_parameter", G_REBUILD_PARAM},
	{"torch._utils", "_rebuild_parameter_with_state", G_REBUILD_PARAM_STATE},
	{"torch", "Size", G_SIZE},
};
#define NGLOBALS (sizeof(globals) / sizeof(globals[0]))

typedef struct pk_obj {
	uint8_t type;
	uint8_t flag;            /* dict: 1 = OrderedDict; global: storage dtype table index */
	uint32_t n;              /* string length, tuple length */
	uint64_t v;              /* int value, string offset, tuple/container/record index */
} pk_obj;

typedef struct pk_cont {
	uint32_t *it;            /* list items, or dict keys and values alternating */
	uint32_t len, cap;
	uint32_t state;          /* OrderedDict: the BUILD state (a dict), or UINT32_MAX */
} pk_cont;

typedef struct pk_vm {
	alcm_input *in;
	const char *label;       /* the record's name, for messages */
	const uint8_t *p;
	size_t len, pos, at;     /* at: offset of the opcode being run */
	pk_obj *obj;
	size_t nobj, obj_cap, max_obj;
	uint32_t *stack;
	size_t sp, stack_cap;
	size_t marks[ALCM_IO_PK_MARKS];
	size_t nmarks;
	uint32_t *memo;
	size_t nmemo, memo_cap;
	uint32_t *items;         /* tuple items */
	size_t nitems, items_cap;
	pk_cont *conts;
	size_t nconts, conts_cap;
	uint64_t cont_items;     /* items in every list and dict, bounded by max_obj */
	alcm_io_pk_result *r;
	size_t tensors_cap, storages_cap, dims_cap;
} pk_vm;

__attribute__((format(printf, 3, 4)))
static int pk_fail(pk_vm *vm, int status, const char *fmt, ...)
{
	char msg[ALCM_DETAIL_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return alcm_io_fail(vm->in, status, "%s at offset %zu: %s", vm->label, vm->at, msg);
}

static int grow(pk_vm *vm, void **p, size_t *cap, size_t need, size_t size)
{
	if (need <= *cap)
		return ALCM_OK;
	size_t c = *cap ? *cap : 64;
	while (c < need)
		c *= 2;
	size_t bytes;
	void *q = NULL;
	if (!__builtin_mul_overflow(c, size, &bytes))
		q = alcm_mem_realloc(&vm->in->alloc, *p, bytes);
	if (!q)
		return pk_fail(vm, ALCM_E_NOMEM, "out of memory");
	*p = q;
	*cap = c;
	return ALCM_OK;
}

static int new_obj(pk_vm *vm, int type, uint32_t n, uint64_t v, uint32_t *id)
{
	if (vm->nobj >= vm->max_obj)
		return pk_fail(vm, ALCM_E_LIMIT, "more than %zu pickle objects", vm->max_obj);
	int rc = grow(vm, (void **)&vm->obj, &vm->obj_cap, vm->nobj + 1, sizeof(*vm->obj));
	if (rc)
		return rc;
	vm->obj[vm->nobj] = (pk_obj){(uint8_t)type, 0, n, v};
	*id = (uint32_t)vm->nobj++;
	return ALCM_OK;
}

static int push(pk_vm *vm, uint32_t id)
{
	if (vm->sp >= vm->max_obj)
		return pk_fail(vm, ALCM_E_LIMIT, "more than %zu values on the pickle stack",
		               vm->max_obj);
	int rc = grow(vm, (void **)&vm->stack, &vm->stack_cap, vm->sp + 1, sizeof(*vm->stack));
	if (rc)
		return rc;
	vm->stack[vm->sp++] = id;
	return ALCM_OK;
}

static int push_new(pk_vm *vm, int type, uint32_t n, uint64_t v)
{
	uint32_t id = 0;
	int rc = new_obj(vm, type, n, v, &id);
	return rc ? rc : push(vm, id);
}

/* Values above the last MARK. */
static size_t frame(const pk_vm *vm)
{
	return vm->sp - (vm->nmarks ? vm->marks[vm->nmarks - 1] : 0);
}

static int need(pk_vm *vm, size_t n, const char *op)
{
	if (frame(vm) < n)
		return pk_fail(vm, ALCM_E_CORRUPT, "%s needs %zu values, the stack has %zu", op, n,
		               frame(vm));
	return ALCM_OK;
}

static int pop_mark(pk_vm *vm, const char *op, size_t *base)
{
	if (!vm->nmarks)
		return pk_fail(vm, ALCM_E_CORRUPT, "%s without a MARK", op);
	*base = vm->marks[--vm->nmarks];
	return ALCM_OK;
}

static const pk_obj *O(const pk_vm *vm, uint32_t id)
{
	return &vm->obj[id];
}

static int new_tuple(pk_vm *vm, const uint32_t *it, size_t n, uint32_t *id)
{
	int rc = grow(vm, (void **)&vm->items, &vm->items_cap, vm->nitems + n + 1,
	              sizeof(*vm->items));
	if (rc)
		return rc;
	if (vm->nitems + n > vm->max_obj)
		return pk_fail(vm, ALCM_E_LIMIT, "more than %zu tuple items", vm->max_obj);
	memcpy(vm->items + vm->nitems, it, n * sizeof(*it));
	rc = new_obj(vm, PK_TUPLE, (uint32_t)n, vm->nitems, id);
	if (rc == ALCM_OK)
		vm->nitems += n;
	return rc;
}

static int new_cont(pk_vm *vm, int type, int ordered, uint32_t *id)
{
	int rc = grow(vm, (void **)&vm->conts, &vm->conts_cap, vm->nconts + 1, sizeof(*vm->conts));
	if (rc)
		return rc;
	rc = new_obj(vm, type, 0, vm->nconts, id);
	if (rc)
		return rc;
	vm->obj[*id].flag = (uint8_t)ordered;
	vm->conts[vm->nconts++] = (pk_cont){NULL, 0, 0, UINT32_MAX};
	return ALCM_OK;
}

static int cont_add(pk_vm *vm, pk_cont *c, const uint32_t *it, size_t n)
{
	if (vm->cont_items + n > vm->max_obj)
		return pk_fail(vm, ALCM_E_LIMIT, "more than %zu list and dict items", vm->max_obj);
	if (c->len + n > UINT32_MAX / 2)
		return pk_fail(vm, ALCM_E_LIMIT, "a container of more than 2^31 items");
	size_t cap = c->cap;
	int rc = grow(vm, (void **)&c->it, &cap, (size_t)c->len + n, sizeof(*c->it));
	if (rc)
		return rc;
	c->cap = (uint32_t)cap;
	memcpy(c->it + c->len, it, n * sizeof(*it));
	c->len += (uint32_t)n;
	vm->cont_items += n;
	return ALCM_OK;
}

static int take(pk_vm *vm, size_t n, const uint8_t **b)
{
	if (vm->len - vm->pos < n)
		return pk_fail(vm, ALCM_E_CORRUPT, "the pickle ends inside an opcode's argument");
	*b = vm->p + vm->pos;
	vm->pos += n;
	return ALCM_OK;
}

/* A line argument of GLOBAL (up to '\n'). */
static int line(pk_vm *vm, const uint8_t **s, size_t *n)
{
	const uint8_t *nl = memchr(vm->p + vm->pos, '\n', vm->len - vm->pos);
	if (!nl)
		return pk_fail(vm, ALCM_E_CORRUPT, "GLOBAL without a newline");
	*s = vm->p + vm->pos;
	*n = (size_t)(nl - *s);
	vm->pos += *n + 1;
	return ALCM_OK;
}

static int global(pk_vm *vm, const uint8_t *mod, size_t ml, const uint8_t *name, size_t nl)
{
	for (size_t i = 0; i < NGLOBALS; i++)
		if (strlen(globals[i].module) == ml && memcmp(globals[i].module, mod, ml) == 0 &&
		    strlen(globals[i].name) == nl && memcmp(globals[i].name, name, nl) == 0)
			return push_new(vm, PK_GLOBAL, 0, (uint64_t)globals[i].id);
	if (ml == 5 && memcmp(mod, "torch", 5) == 0)
		for (size_t i = 0; i < NSTORAGES; i++)
			if (strlen(storages[i].name) == nl && memcmp(storages[i].name, name, nl) == 0) {
				int rc = push_new(vm, PK_GLOBAL, 0, G_STORAGE);
				if (rc == ALCM_OK)
					vm->obj[vm->stack[vm->sp - 1]].flag = (uint8_t)i;
				return rc;
			}
	char m[ALCM_IO_QUOTE], q[ALCM_IO_QUOTE];
	alcm_io_quote(m, (const char *)mod, ml);
	alcm_io_quote(q, (const char *)name, nl);
	if (ml == 5 && memcmp(mod, "torch", 5) == 0 && nl > 7 &&
	    memcmp(name + nl - 7, "Storage", 7) == 0)
		return pk_fail(vm, ALCM_E_UNSUPPORTED,
		               "global '%s.%s': tensors of that type are not supported (bool, "
		               "integers, float16, bfloat16, float32 and float64 are)", m, q);
	return pk_fail(vm, ALCM_E_UNSUPPORTED,
	               "global '%s.%s' is not allowed: a state dict needs only "
	               "collections.OrderedDict, torch._utils._rebuild_tensor_v2 and "
	               "_rebuild_parameter, torch.Size and the torch.*Storage classes (nothing "
	               "is executed)", m, q);
}

static int op_stack_global(pk_vm *vm)
{
	int rc = need(vm, 2, "STACK_GLOBAL");
	if (rc)
		return rc;
	const pk_obj *m = O(vm, vm->stack[vm->sp - 2]), *n = O(vm, vm->stack[vm->sp - 1]);
	if (m->type != PK_STR || n->type != PK_STR)
		return pk_fail(vm, ALCM_E_CORRUPT, "STACK_GLOBAL of a %s and a %s",
		               type_names[m->type], type_names[n->type]);
	vm->sp -= 2;
	return global(vm, vm->p + m->v, m->n, vm->p + n->v, n->n);
}

static int as_int(const pk_vm *vm, uint32_t id, int64_t *v)
{
	const pk_obj *o = O(vm, id);
	if (o->type == PK_INT) {
		*v = (int64_t)o->v;
		return 1;
	}
	if (o->type == PK_BOOL) {
		*v = (int64_t)o->v;
		return 1;
	}
	return 0;
}

static const uint32_t *tuple_items(const pk_vm *vm, const pk_obj *t)
{
	return vm->items + t->v;
}

/* An empty dict (backward hooks, tensor metadata), or None when `none_ok`. */
static int empty_dict(const pk_vm *vm, uint32_t id, int none_ok)
{
	const pk_obj *o = O(vm, id);
	if (o->type == PK_NONE)
		return none_ok;
	return o->type == PK_DICT && vm->conts[o->v].len == 0;
}

static int int_tuple(pk_vm *vm, uint32_t id, const char *what, uint32_t *n, uint64_t *out)
{
	const pk_obj *t = O(vm, id);
	if (t->type != PK_TUPLE)
		return pk_fail(vm, ALCM_E_CORRUPT, "%s is a %s, not a tuple", what,
		               type_names[t->type]);
	if (t->n > vm->in->lim.max_ndim)
		return pk_fail(vm, ALCM_E_LIMIT, "%s has %u dimensions, the limit is %u", what,
		               (unsigned)t->n, (unsigned)vm->in->lim.max_ndim);
	for (uint32_t i = 0; i < t->n; i++) {
		int64_t v;
		if (!as_int(vm, tuple_items(vm, t)[i], &v) || O(vm, tuple_items(vm, t)[i])->type != PK_INT)
			return pk_fail(vm, ALCM_E_CORRUPT, "%s holds a %s", what,
			               type_names[O(vm, tuple_items(vm, t)[i])->type]);
		if (v < 0)
			return pk_fail(vm, ALCM_E_CORRUPT, "%s holds the negative value %lld", what,
			               (long long)v);
		out[i] = (uint64_t)v;
	}
	*n = t->n;
	return ALCM_OK;
}

static int new_tensor(pk_vm *vm, alcm_io_pk_tensor *t)
{
	alcm_io_pk_result *r = vm->r;
	int rc = grow(vm, (void **)&r->tensors, &vm->tensors_cap, r->ntensors + 1,
	              sizeof(*r->tensors));
	if (rc)
		return rc;
	r->tensors[r->ntensors] = *t;
	rc = push_new(vm, PK_TENSOR, 0, r->ntensors);
	if (rc == ALCM_OK)
		r->ntensors++;
	return rc;
}

/* _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) and
 * _rebuild_tensor(storage, offset, size, stride). */
static int rebuild_tensor(pk_vm *vm, const pk_obj *args, int v2)
{
	const uint32_t *a = tuple_items(vm, args);
	const char *fn = v2 ? "_rebuild_tensor_v2" : "_rebuild_tensor";
	if (v2 ? (args->n != 6 && args->n != 7) : args->n != 4)
		return pk_fail(vm, ALCM_E_CORRUPT, "%s with %u arguments", fn, (unsigned)args->n);
	if (O(vm, a[0])->type != PK_STORAGE)
		return pk_fail(vm, ALCM_E_CORRUPT, "%s of a %s, not a storage", fn,
		               type_names[O(vm, a[0])->type]);
	alcm_io_pk_tensor t;
	memset(&t, 0, sizeof(t));
	t.storage = (uint32_t)O(vm, a[0])->v;
	int64_t off, rg = 0;
	if (!as_int(vm, a[1], &off) || O(vm, a[1])->type != PK_INT || off < 0)
		return pk_fail(vm, ALCM_E_CORRUPT, "%s: the storage offset is not an integer >= 0", fn);
	t.offset = (uint64_t)off;
	uint64_t shape[ALCM_MAX_NDIM], stride[ALCM_MAX_NDIM];
	uint32_t nd, ns;
	int rc = int_tuple(vm, a[2], "the size", &nd, shape);
	if (rc == ALCM_OK)
		rc = int_tuple(vm, a[3], "the stride", &ns, stride);
	if (rc)
		return rc;
	if (nd != ns)
		return pk_fail(vm, ALCM_E_CORRUPT, "%s: %u sizes and %u strides", fn, (unsigned)nd,
		               (unsigned)ns);
	if (v2) {
		if (O(vm, a[4])->type != PK_BOOL)
			return pk_fail(vm, ALCM_E_CORRUPT, "%s: requires_grad is a %s", fn,
			               type_names[O(vm, a[4])->type]);
		as_int(vm, a[4], &rg);
		if (!empty_dict(vm, a[5], 0))
			return pk_fail(vm, ALCM_E_UNSUPPORTED,
			               "%s: backward hooks are not part of a state dict", fn);
		if (args->n == 7 && !empty_dict(vm, a[6], 1))
			return pk_fail(vm, ALCM_E_UNSUPPORTED, "%s: tensor metadata is not supported", fn);
	}
	t.requires_grad = (uint8_t)rg;
	t.ndim = nd;
	alcm_io_pk_result *r = vm->r;
	rc = grow(vm, (void **)&r->dims, &vm->dims_cap, r->ndims + 2 * (size_t)nd + 1,
	          sizeof(*r->dims));
	if (rc)
		return rc;
	t.dims_at = r->ndims;
	memcpy(r->dims + r->ndims, shape, nd * sizeof(uint64_t));
	memcpy(r->dims + r->ndims + nd, stride, nd * sizeof(uint64_t));
	r->ndims += 2 * (size_t)nd;
	return new_tensor(vm, &t);
}

/* _rebuild_parameter(data, requires_grad, hooks) and _with_state(..., state). */
static int rebuild_param(pk_vm *vm, const pk_obj *args, int with_state)
{
	const uint32_t *a = tuple_items(vm, args);
	const char *fn = with_state ? "_rebuild_parameter_with_state" : "_rebuild_parameter";
	if (args->n != (with_state ? 4u : 3u))
		return pk_fail(vm, ALCM_E_CORRUPT, "%s with %u arguments", fn, (unsigned)args->n);
	if (O(vm, a[0])->type != PK_TENSOR || O(vm, a[1])->type != PK_BOOL)
		return pk_fail(vm, ALCM_E_CORRUPT, "%s of a %s and a %s", fn,
		               type_names[O(vm, a[0])->type], type_names[O(vm, a[1])->type]);
	if (!empty_dict(vm, a[2], 0))
		return pk_fail(vm, ALCM_E_UNSUPPORTED, "%s: backward hooks are not part of a state dict",
		               fn);
	if (with_state && !empty_dict(vm, a[3], 1))
		return pk_fail(vm, ALCM_E_UNSUPPORTED, "%s: parameter state is not supported", fn);
	alcm_io_pk_tensor t = vm->r->tensors[O(vm, a[0])->v];
	t.parameter = 1;
	t.requires_grad = (uint8_t)O(vm, a[1])->v;
	return new_tensor(vm, &t);
}

static int op_reduce(pk_vm *vm)
{
	int rc = need(vm, 2, "REDUCE");
	if (rc)
		return rc;
	uint32_t fid = vm->stack[vm->sp - 2], aid = vm->stack[vm->sp - 1];
	const pk_obj *f = O(vm, fid), *args = O(vm, aid);
	if (f->type != PK_GLOBAL)
		return pk_fail(vm, ALCM_E_UNSUPPORTED, "REDUCE calls a %s, not an allowed global",
		               type_names[f->type]);
	if (args->type != PK_TUPLE)
		return pk_fail(vm, ALCM_E_CORRUPT, "REDUCE with a %s of arguments",
		               type_names[args->type]);
	vm->sp -= 2;
	uint32_t id = 0;
	switch (f->v) {
	case G_ORDERED_DICT:
		if (args->n != 0)
			return pk_fail(vm, ALCM_E_UNSUPPORTED, "OrderedDict called with arguments");
		rc = new_cont(vm, PK_DICT, 1, &id);
		return rc ? rc : push(vm, id);
	case G_REBUILD_V2: return rebuild_tensor(vm, args, 1);
	case G_REBUILD: return rebuild_tensor(vm, args, 0);
	case G_REBUILD_PARAM: return rebuild_param(vm, args, 0);
	case G_REBUILD_PARAM_STATE: return rebuild_param(vm, args, 1);
	case G_SIZE:
		if (args->n != 1 || O(vm, tuple_items(vm, args)[0])->type != PK_TUPLE)
			return pk_fail(vm, ALCM_E_CORRUPT, "torch.Size takes one tuple");
		return push(vm, tuple_items(vm, args)[0]);
	default:
		return pk_fail(vm, ALCM_E_UNSUPPORTED, "REDUCE calls torch.%s, which only names a "
		               "storage type", storages[f->flag].name);
	}
}

/* ('storage', class, key, location, numel) -> a storage, the same for the same key. */
static int op_persid(pk_vm *vm)
{
	int rc = need(vm, 1, "BINPERSID");
	if (rc)
		return rc;
	const pk_obj *t = O(vm, vm->stack[--vm->sp]);
	if (t->type != PK_TUPLE || t->n < 1 || O(vm, tuple_items(vm, t)[0])->type != PK_STR)
		return pk_fail(vm, ALCM_E_UNSUPPORTED, "a persistent id that is not a storage");
	const uint32_t *a = tuple_items(vm, t);
	const pk_obj *tag = O(vm, a[0]);
	if (tag->n != 7 || memcmp(vm->p + tag->v, "storage", 7) != 0)
		return pk_fail(vm, ALCM_E_UNSUPPORTED, "only persistent ids of storages are allowed");
	int64_t numel;
	if (t->n != 5 || O(vm, a[1])->type != PK_GLOBAL || O(vm, a[1])->v != G_STORAGE ||
	    O(vm, a[2])->type != PK_STR || O(vm, a[3])->type != PK_STR || !as_int(vm, a[4], &numel) ||
	    O(vm, a[4])->type != PK_INT || numel < 0)
		return pk_fail(vm, ALCM_E_CORRUPT, "a storage id that is not ('storage', "
		               "torch.<Type>Storage, key, location, numel >= 0)");
	const pk_obj *key = O(vm, a[2]);
	int dtype = storages[O(vm, a[1])->flag].dtype;
	alcm_io_pk_result *r = vm->r;
	for (size_t i = 0; i < r->nstorages; i++) {
		alcm_io_pk_storage *s = &r->storages[i];
		if (s->key_len != key->n || memcmp(s->key, vm->p + key->v, key->n) != 0)
			continue;
		if (s->dtype != dtype || s->numel != (uint64_t)numel) {
			char q[ALCM_IO_QUOTE];
			return pk_fail(vm, ALCM_E_CORRUPT,
			               "storage '%s' is declared twice, as %s of %llu and %s of %lld",
			               alcm_io_quote(q, (const char *)s->key, s->key_len),
			               alcm_dtype_name(s->dtype), (unsigned long long)s->numel,
			               alcm_dtype_name(dtype), (long long)numel);
		}
		return push_new(vm, PK_STORAGE, 0, i);
	}
	if (r->nstorages >= vm->in->lim.max_tensors)
		return pk_fail(vm, ALCM_E_LIMIT, "more than %u storages",
		               (unsigned)vm->in->lim.max_tensors);
	rc = grow(vm, (void **)&r->storages, &vm->storages_cap, r->nstorages + 1,
	          sizeof(*r->storages));
	if (rc)
		return rc;
	r->storages[r->nstorages] = (alcm_io_pk_storage){vm->p + key->v, key->n, dtype,
	                                                 (uint64_t)numel, vm->at};
	rc = push_new(vm, PK_STORAGE, 0, r->nstorages);
	if (rc == ALCM_OK)
		r->nstorages++;
	return rc;
}

static int op_put(pk_vm *vm, uint64_t key)
{
	if (!frame(vm))
		return pk_fail(vm, ALCM_E_CORRUPT, "memo put with an empty stack");
	if (key > vm->nmemo)
		return pk_fail(vm, ALCM_E_UNSUPPORTED,
		               "memo key %llu skips ahead of the %zu keys so far (picklers number "
		               "them in sequence)", (unsigned long long)key, vm->nmemo);
	if (key == vm->nmemo) {
		int rc = grow(vm, (void **)&vm->memo, &vm->memo_cap, vm->nmemo + 1, sizeof(*vm->memo));
		if (rc)
			return rc;
		vm->nmemo++;
	}
	vm->memo[key] = vm->stack[vm->sp - 1];
	return ALCM_OK;
}

static int op_get(pk_vm *vm, uint64_t key)
{
	if (key >= vm->nmemo)
		return pk_fail(vm, ALCM_E_CORRUPT, "memo key %llu was never stored",
		               (unsigned long long)key);
	return push(vm, vm->memo[key]);
}

static int op_setitems(pk_vm *vm, size_t base, const char *op)
{
	size_t n = vm->sp - base;
	if (base == 0 || (n & 1))
		return pk_fail(vm, ALCM_E_CORRUPT, "%s with %s", op,
		               base == 0 ? "no dict below" : "an odd number of values");
	if (base - 1 < (vm->nmarks ? vm->marks[vm->nmarks - 1] : 0))
		return pk_fail(vm, ALCM_E_CORRUPT, "%s with no dict below", op);
	const pk_obj *d = O(vm, vm->stack[base - 1]);
	if (d->type != PK_DICT)
		return pk_fail(vm, ALCM_E_UNSUPPORTED, "%s on a %s", op, type_names[d->type]);
	int rc = cont_add(vm, &vm->conts[d->v], vm->stack + base, n);
	vm->sp = base;
	return rc;
}

static int op_appends(pk_vm *vm, size_t base, const char *op)
{
	size_t n = vm->sp - base;
	if (base == 0 || base - 1 < (vm->nmarks ? vm->marks[vm->nmarks - 1] : 0))
		return pk_fail(vm, ALCM_E_CORRUPT, "%s with no list below", op);
	const pk_obj *l = O(vm, vm->stack[base - 1]);
	if (l->type != PK_LIST)
		return pk_fail(vm, ALCM_E_UNSUPPORTED, "%s on a %s", op, type_names[l->type]);
	int rc = cont_add(vm, &vm->conts[l->v], vm->stack + base, n);
	vm->sp = base;
	return rc;
}

/* BUILD: only the state {'_metadata': ...} of the top OrderedDict, as state_dict() makes. */
static int op_build(pk_vm *vm)
{
	int rc = need(vm, 2, "BUILD");
	if (rc)
		return rc;
	uint32_t sid = vm->stack[vm->sp - 1];
	const pk_obj *inst = O(vm, vm->stack[vm->sp - 2]), *st = O(vm, sid);
	if (inst->type != PK_DICT || !inst->flag)
		return pk_fail(vm, ALCM_E_UNSUPPORTED, "BUILD (set state) of a %s%s",
		               inst->type == PK_DICT ? "plain " : "", type_names[inst->type]);
	if (st->type == PK_NONE) {
		vm->sp--;
		return ALCM_OK;
	}
	if (st->type != PK_DICT)
		return pk_fail(vm, ALCM_E_UNSUPPORTED, "BUILD of an OrderedDict with a %s",
		               type_names[st->type]);
	const pk_cont *c = &vm->conts[st->v];
	for (uint32_t i = 0; i < c->len; i += 2) {
		const pk_obj *k = O(vm, c->it[i]);
		if (k->type != PK_STR || k->n != 9 || memcmp(vm->p + k->v, "_metadata", 9) != 0) {
			char q[ALCM_IO_QUOTE];
			return pk_fail(vm, ALCM_E_UNSUPPORTED,
			               "BUILD sets attribute '%s' of an OrderedDict (only _metadata)",
			               k->type == PK_STR ? alcm_io_quote(q, (const char *)vm->p + k->v, k->n)
			                                 : type_names[k->type]);
		}
	}
	if (vm->conts[inst->v].state != UINT32_MAX)
		return pk_fail(vm, ALCM_E_UNSUPPORTED, "BUILD twice on one OrderedDict");
	vm->conts[inst->v].state = sid;
	vm->sp--;
	return ALCM_OK;
}

static int op_tuple(pk_vm *vm, size_t n)
{
	int rc = need(vm, n, "TUPLE");
	if (rc)
		return rc;
	uint32_t id = 0;
	rc = new_tuple(vm, vm->stack + vm->sp - n, n, &id);
	if (rc)
		return rc;
	vm->sp -= n;
	return push(vm, id);
}

static int op_long1(pk_vm *vm)
{
	const uint8_t *b = NULL;
	int rc = take(vm, 1, &b);
	if (rc)
		return rc;
	size_t n = b[0];
	if ((rc = take(vm, n, &b)))
		return rc;
	if (n > 8)
		return pk_fail(vm, ALCM_E_UNSUPPORTED, "an integer of %zu bytes (at most 8)", n);
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)b[i] << (8 * i);
	if (n && n < 8 && (b[n - 1] & 0x80))
		v |= ~(uint64_t)0 << (8 * n);
	return push_new(vm, PK_INT, 0, v);
}

static int op_string(pk_vm *vm, size_t lenbytes)
{
	const uint8_t *b = NULL;
	int rc = take(vm, lenbytes, &b);
	if (rc)
		return rc;
	uint64_t n = lenbytes == 1 ? b[0] : alcm_load32(b);
	if (n > vm->len - vm->pos)
		return pk_fail(vm, ALCM_E_CORRUPT, "a string of %llu bytes runs past the pickle",
		               (unsigned long long)n);
	rc = push_new(vm, PK_STR, (uint32_t)n, vm->pos);
	vm->pos += (size_t)n;
	return rc;
}

static int step(pk_vm *vm, int op, int *stop)
{
	const uint8_t *b = NULL;
	int rc;
	size_t base = 0;
	switch (op) {
	case 0x80: /* PROTO */
		if ((rc = take(vm, 1, &b)))
			return rc;
		if (b[0] > 5)
			return pk_fail(vm, ALCM_E_UNSUPPORTED, "pickle protocol %u", b[0]);
		return ALCM_OK;
	case 0x95: /* FRAME: a length hint, checked and ignored */
		if ((rc = take(vm, 8, &b)))
			return rc;
		if (alcm_load64(b) > vm->len - vm->pos)
			return pk_fail(vm, ALCM_E_CORRUPT, "a frame runs past the pickle");
		return ALCM_OK;
	case '.': *stop = 1; return ALCM_OK;
	case '(':
		if (vm->nmarks >= ALCM_IO_PK_MARKS)
			return pk_fail(vm, ALCM_E_LIMIT, "MARKs nested more than %d deep",
			               ALCM_IO_PK_MARKS);
		vm->marks[vm->nmarks++] = vm->sp;
		return ALCM_OK;
	case 'c': {
		const uint8_t *m = NULL, *n = NULL;
		size_t ml = 0, nl = 0;
		if ((rc = line(vm, &m, &ml)) || (rc = line(vm, &n, &nl)))
			return rc;
		return global(vm, m, ml, n, nl);
	}
	case 0x93: return op_stack_global(vm);
	case 'R': return op_reduce(vm);
	case 'b': return op_build(vm);
	case 'Q': return op_persid(vm);
	case ')': return op_tuple(vm, 0);
	case 0x85: return op_tuple(vm, 1);
	case 0x86: return op_tuple(vm, 2);
	case 0x87: return op_tuple(vm, 3);
	case 't': {
		if ((rc = pop_mark(vm, "TUPLE", &base)))
			return rc;
		uint32_t id = 0;
		size_t n = vm->sp - base;
		if ((rc = new_tuple(vm, vm->stack + base, n, &id)))
			return rc;
		vm->sp = base;
		return push(vm, id);
	}
	case ']': {
		uint32_t id = 0;
		return (rc = new_cont(vm, PK_LIST, 0, &id)) ? rc : push(vm, id);
	}
	case '}': {
		uint32_t id = 0;
		return (rc = new_cont(vm, PK_DICT, 0, &id)) ? rc : push(vm, id);
	}
	case 'a':
		if ((rc = need(vm, 2, "APPEND")))
			return rc;
		return op_appends(vm, vm->sp - 1, "APPEND");
	case 'e': return (rc = pop_mark(vm, "APPENDS", &base)) ? rc : op_appends(vm, base, "APPENDS");
	case 's':
		if ((rc = need(vm, 3, "SETITEM")))
			return rc;
		return op_setitems(vm, vm->sp - 2, "SETITEM");
	case 'u':
		return (rc = pop_mark(vm, "SETITEMS", &base)) ? rc : op_setitems(vm, base, "SETITEMS");
	case 'N': return push_new(vm, PK_NONE, 0, 0);
	case 0x88: return push_new(vm, PK_BOOL, 0, 1);
	case 0x89: return push_new(vm, PK_BOOL, 0, 0);
	case 'J':
		if ((rc = take(vm, 4, &b)))
			return rc;
		return push_new(vm, PK_INT, 0, (uint64_t)(int64_t)(int32_t)alcm_load32(b));
	case 'K': return (rc = take(vm, 1, &b)) ? rc : push_new(vm, PK_INT, 0, b[0]);
	case 'M': return (rc = take(vm, 2, &b)) ? rc : push_new(vm, PK_INT, 0, alcm_load16(b));
	case 0x8a: return op_long1(vm);
	case 'X': return op_string(vm, 4);
	case 0x8c: /* SHORT_BINUNICODE */
	case 'U':  /* SHORT_BINSTRING */
		return op_string(vm, 1);
	case 'h': return (rc = take(vm, 1, &b)) ? rc : op_get(vm, b[0]);
	case 'j': return (rc = take(vm, 4, &b)) ? rc : op_get(vm, alcm_load32(b));
	case 'q': return (rc = take(vm, 1, &b)) ? rc : op_put(vm, b[0]);
	case 'r': return (rc = take(vm, 4, &b)) ? rc : op_put(vm, alcm_load32(b));
	case 0x94: return op_put(vm, vm->nmemo); /* MEMOIZE */
	default:
		if (op >= 0x21 && op < 0x7f)
			return pk_fail(vm, ALCM_E_UNSUPPORTED,
			               "pickle opcode 0x%02x ('%c') is not one a state dict uses", op, op);
		return pk_fail(vm, ALCM_E_UNSUPPORTED,
		               "pickle opcode 0x%02x is not one a state dict uses", op);
	}
}

/* ---- state_dict._metadata as JSON ---- */

static int to_json(pk_vm *vm, alcm_io_sb *b, uint32_t id, unsigned depth, uint64_t *budget)
{
	const pk_obj *o = O(vm, id);
	if (!(*budget)--)
		return pk_fail(vm, ALCM_E_LIMIT, "_metadata shares containers (too many values)");
	if (depth > ALCM_IO_PK_JSON_DEPTH)
		return pk_fail(vm, ALCM_E_LIMIT, "_metadata nested more than %d deep",
		               ALCM_IO_PK_JSON_DEPTH);
	switch (o->type) {
	case PK_NONE: alcm_io_sb_str(b, "null"); return ALCM_OK;
	case PK_BOOL: alcm_io_sb_str(b, o->v ? "true" : "false"); return ALCM_OK;
	case PK_INT: {
		char t[24];
		snprintf(t, sizeof(t), "%lld", (long long)(int64_t)o->v);
		alcm_io_sb_str(b, t);
		return ALCM_OK;
	}
	case PK_STR:
		if (!alcm_io_utf8_valid(vm->p + o->v, o->n, NULL))
			return pk_fail(vm, ALCM_E_UNSUPPORTED, "a _metadata string is not UTF-8");
		alcm_io_json_put_string(b, (const char *)vm->p + o->v, o->n);
		return ALCM_OK;
	case PK_DICT:
	case PK_LIST: {
		const pk_cont *c = &vm->conts[o->v];
		int dict = o->type == PK_DICT;
		alcm_io_sb_put(b, dict ? "{" : "[", 1);
		for (uint32_t i = 0; i < c->len; i += dict ? 2 : 1) {
			if (i)
				alcm_io_sb_put(b, ",", 1);
			if (dict) {
				if (O(vm, c->it[i])->type != PK_STR)
					return pk_fail(vm, ALCM_E_UNSUPPORTED, "a _metadata key is a %s",
					               type_names[O(vm, c->it[i])->type]);
				int rc = to_json(vm, b, c->it[i], depth + 1, budget);
				if (rc)
					return rc;
				alcm_io_sb_put(b, ":", 1);
			}
			int rc = to_json(vm, b, c->it[i + (unsigned)dict], depth + 1, budget);
			if (rc)
				return rc;
		}
		alcm_io_sb_put(b, dict ? "}" : "]", 1);
		return ALCM_OK;
	}
	default:
		return pk_fail(vm, ALCM_E_UNSUPPORTED, "_metadata holds a %s", type_names[o->type]);
	}
}

static int metadata(pk_vm *vm, uint32_t state)
{
	const pk_cont *c = &vm->conts[O(vm, state)->v];
	if (c->len == 0)
		return ALCM_OK;
	uint32_t md = c->it[c->len - 1]; /* the last '_metadata' wins, as in Python */
	if (O(vm, md)->type != PK_DICT)
		return pk_fail(vm, ALCM_E_UNSUPPORTED, "_metadata is a %s, not a dict",
		               type_names[O(vm, md)->type]);
	alcm_io_sb b = {.a = &vm->in->alloc};
	uint64_t budget = vm->cont_items + 1;
	int rc = to_json(vm, &b, md, 0, &budget);
	if (rc == ALCM_OK && b.oom)
		rc = pk_fail(vm, ALCM_E_NOMEM, "out of memory");
	if (rc == ALCM_OK && b.len > vm->in->lim.max_meta_bytes)
		rc = pk_fail(vm, ALCM_E_LIMIT, "_metadata of %zu bytes exceeds max_meta_bytes", b.len);
	if (rc) {
		alcm_io_sb_free(&b);
		return rc;
	}
	vm->r->metadata = b.p;
	vm->r->metadata_len = b.len;
	return ALCM_OK;
}

/* The result must be a dict of str -> tensor. */
static int result(pk_vm *vm, uint32_t top)
{
	const pk_obj *d = O(vm, top);
	if (d->type != PK_DICT)
		return pk_fail(vm, ALCM_E_UNSUPPORTED,
		               "the pickle holds a %s, not a state dict (a dict of tensors)",
		               type_names[d->type]);
	const pk_cont *c = &vm->conts[d->v];
	alcm_io_pk_result *r = vm->r;
	r->ordered = d->flag;
	r->entries = alcm_mem_calloc(&vm->in->alloc, c->len / 2 + 1, sizeof(*r->entries));
	if (!r->entries)
		return pk_fail(vm, ALCM_E_NOMEM, "out of memory");
	for (uint32_t i = 0; i < c->len; i += 2) {
		const pk_obj *k = O(vm, c->it[i]), *v = O(vm, c->it[i + 1]);
		char q[ALCM_IO_QUOTE];
		if (k->type != PK_STR)
			return pk_fail(vm, ALCM_E_UNSUPPORTED, "a state dict key is a %s, not a string",
			               type_names[k->type]);
		alcm_io_quote(q, (const char *)vm->p + k->v, k->n);
		if (v->type == PK_DICT)
			return pk_fail(vm, ALCM_E_UNSUPPORTED,
			               "'%s' holds a nested dict: this is a training checkpoint, not a "
			               "state dict; save its state dict alone (torch.save(ckpt['%s'], "
			               "...)) to pack it", q, q);
		if (v->type != PK_TENSOR)
			return pk_fail(vm, ALCM_E_UNSUPPORTED,
			               "'%s' holds a value of type %s: only tensors are stored (a state "
			               "dict)", q, type_names[v->type]);
		if (k->n > vm->in->lim.max_name_bytes)
			return pk_fail(vm, ALCM_E_LIMIT, "a name of %u bytes exceeds the limit of %u",
			               (unsigned)k->n, (unsigned)vm->in->lim.max_name_bytes);
		if (r->nentries >= vm->in->lim.max_tensors)
			return pk_fail(vm, ALCM_E_LIMIT, "more than %u tensors",
			               (unsigned)vm->in->lim.max_tensors);
		r->entries[r->nentries++] = (alcm_io_pk_entry){vm->p + k->v, k->n, (size_t)v->v};
	}
	uint32_t state = vm->conts[d->v].state;
	return state == UINT32_MAX ? ALCM_OK : metadata(vm, state);
}

int alcm_io_pickle_load(alcm_input *in, const char *label, const uint8_t *p, size_t len,
                        alcm_io_pk_result *r)
{
	pk_vm vm;
	memset(&vm, 0, sizeof(vm));
	memset(r, 0, sizeof(*r));
	vm.in = in;
	vm.label = label;
	vm.p = p;
	vm.len = len;
	vm.r = r;
	uint64_t cap = (uint64_t)ALCM_IO_PK_OBJECTS_PER_TENSOR * in->lim.max_tensors + 4096;
	vm.max_obj = (size_t)(cap < len ? cap : len);
	if (vm.max_obj > UINT32_MAX - 1)
		vm.max_obj = UINT32_MAX - 1;
	int rc = ALCM_OK, stop = 0;
	while (!stop && rc == ALCM_OK) {
		if (vm.pos >= len) {
			vm.at = len;
			rc = pk_fail(&vm, ALCM_E_CORRUPT, "the pickle ends without STOP");
			break;
		}
		vm.at = vm.pos;
		rc = step(&vm, p[vm.pos++], &stop);
	}
	if (rc == ALCM_OK && (vm.sp != 1 || vm.nmarks))
		rc = pk_fail(&vm, ALCM_E_CORRUPT, "STOP with %zu values and %zu MARKs on the stack",
		             vm.sp, vm.nmarks);
	if (rc == ALCM_OK && vm.pos != len)
		rc = pk_fail(&vm, ALCM_E_CORRUPT, "%zu bytes after STOP", len - vm.pos);
	if (rc == ALCM_OK)
		rc = result(&vm, vm.stack[0]);
	for (size_t i = 0; i < vm.nconts; i++)
		alcm_mem_free(&in->alloc, vm.conts[i].it);
	alcm_mem_free(&in->alloc, vm.conts);
	alcm_mem_free(&in->alloc, vm.obj);
	alcm_mem_free(&in->alloc, vm.stack);
	alcm_mem_free(&in->alloc, vm.memo);
	alcm_mem_free(&in->alloc, vm.items);
	return rc;
}

void alcm_io_pickle_free(alcm_input *in, alcm_io_pk_result *r)
{
	alcm_mem_free(&in->alloc, r->storages);
	alcm_mem_free(&in->alloc, r->tensors);
	alcm_mem_free(&in->alloc, r->entries);
	alcm_mem_free(&in->alloc, r->dims);
	alcm_mem_free(&in->alloc, r->metadata);
	memset(r, 0, sizeof(*r));
}

/* ---- writer ---- */

const char *alcm_io_pickle_storage_class(int dtype)
{
	for (size_t i = 0; i < NSTORAGES; i++)
		if (storages[i].dtype == dtype)
			return storages[i].name;
	return NULL;
}

static void put_op(alcm_io_sb *b, uint8_t op)
{
	alcm_io_sb_put(b, &op, 1);
}

/* As CPython's pickler writes ints in protocol 2. */
static void put_int(alcm_io_sb *b, int64_t v)
{
	uint8_t t[10];
	if (v >= 0 && v <= 0xff) {
		t[0] = 'K', t[1] = (uint8_t)v;
		alcm_io_sb_put(b, t, 2);
	} else if (v >= 0 && v <= 0xffff) {
		t[0] = 'M';
		alcm_store16(t + 1, (uint16_t)v);
		alcm_io_sb_put(b, t, 3);
	} else if (v >= INT32_MIN && v <= INT32_MAX) {
		t[0] = 'J';
		alcm_store32(t + 1, (uint32_t)(int32_t)v);
		alcm_io_sb_put(b, t, 5);
	} else {
		/* encode_long: little-endian two's complement, as few bytes as keep the sign. */
		uint64_t u = (uint64_t)v;
		size_t n = 8;
		while (n > 1) {
			uint8_t top = (uint8_t)(u >> (8 * (n - 1))), next = (uint8_t)(u >> (8 * (n - 2)));
			if ((top == 0 && !(next & 0x80)) || (top == 0xff && (next & 0x80)))
				n--;
			else
				break;
		}
		t[0] = 0x8a, t[1] = (uint8_t)n;
		for (size_t i = 0; i < n; i++)
			t[2 + i] = (uint8_t)(u >> (8 * i));
		alcm_io_sb_put(b, t, 2 + n);
	}
}

static void put_str(alcm_io_sb *b, const char *s, size_t n)
{
	uint8_t t[5] = {'X'};
	alcm_store32(t + 1, (uint32_t)n);
	alcm_io_sb_put(b, t, 5);
	alcm_io_sb_put(b, s, n);
}

static void put_global(alcm_io_sb *b, const char *mod, const char *name)
{
	put_op(b, 'c');
	alcm_io_sb_str(b, mod);
	put_op(b, '\n');
	alcm_io_sb_str(b, name);
	put_op(b, '\n');
}

static void put_tuple_of(alcm_io_sb *b, const uint64_t *v, uint32_t n)
{
	if (n > 3)
		put_op(b, '(');
	for (uint32_t i = 0; i < n; i++)
		put_int(b, (int64_t)v[i]);
	static const uint8_t ops[4] = {')', 0x85, 0x86, 0x87};
	put_op(b, n <= 3 ? ops[n] : 't');
}

static void put_empty_ordered_dict(alcm_io_sb *b)
{
	put_global(b, "collections", "OrderedDict");
	put_op(b, ')');
	put_op(b, 'R');
}

static void put_tensor(alcm_io_sb *b, const alcm_io_pkw_tensor *t)
{
	if (t->parameter)
		put_global(b, "torch._utils", "_rebuild_parameter");
	put_global(b, "torch._utils", "_rebuild_tensor_v2");
	put_op(b, '(');
	put_op(b, '(');
	put_str(b, "storage", 7);
	put_global(b, "torch", alcm_io_pickle_storage_class(t->dtype));
	put_str(b, t->key, t->key_len);
	put_str(b, "cpu", 3);
	put_int(b, (int64_t)t->numel);
	put_op(b, 't');
	put_op(b, 'Q');
	put_int(b, (int64_t)t->offset);
	put_tuple_of(b, t->shape, t->ndim);
	put_tuple_of(b, t->stride, t->ndim);
	put_op(b, t->requires_grad && !t->parameter ? 0x88 : 0x89);
	put_empty_ordered_dict(b);
	put_op(b, 't');
	put_op(b, 'R');
	if (t->parameter) {
		put_op(b, t->requires_grad ? 0x88 : 0x89);
		put_empty_ordered_dict(b);
		put_op(b, 0x87);
		put_op(b, 'R');
	}
}

/* JSON (checked by the caller's lexer as it goes) to pickle: the outer object becomes an
 * OrderedDict, inner objects dicts, arrays lists. */
static int json_value(alcm_io_json *j, alcm_io_sb *b, unsigned depth, int outer)
{
	if (depth > ALCM_IO_PK_JSON_DEPTH)
		return alcm_io_json_error(j, ALCM_E_LIMIT, "nested too deep");
	int c = alcm_io_json_peek(j);
	if (c == '"') {
		size_t n, at = j->pos;
		if (alcm_io_json_string(j, NULL, 0, &n))
			return j->status;
		uint8_t *s = alcm_mem_alloc(b->a, n ? n : 1);
		if (!s)
			return alcm_io_json_error(j, ALCM_E_NOMEM, "out of memory");
		j->pos = at;
		alcm_io_json_string(j, s, n, &n);
		put_str(b, (const char *)s, n);
		alcm_mem_free(b->a, s);
		return ALCM_OK;
	}
	if (c == 't' || c == 'f' || c == 'n') {
		const char *w = c == 't' ? "true" : c == 'f' ? "false" : "null";
		size_t n = strlen(w);
		if (j->len - j->pos < n || memcmp(j->p + j->pos, w, n) != 0)
			return alcm_io_json_error(j, ALCM_E_CORRUPT, "unexpected character");
		j->pos += n;
		put_op(b, c == 't' ? 0x88 : c == 'f' ? 0x89 : 'N');
		return ALCM_OK;
	}
	if (c == '-' || (c >= '0' && c <= '9')) {
		int neg = c == '-';
		uint64_t v;
		j->pos += (size_t)neg;
		if (alcm_io_json_u64(j, &v))
			return j->status;
		if (v > (uint64_t)INT64_MAX + (uint64_t)neg)
			return alcm_io_json_error(j, ALCM_E_UNSUPPORTED, "integer beyond 64 bits");
		put_int(b, neg ? (int64_t)(0 - v) : (int64_t)v);
		return ALCM_OK;
	}
	if (c == '[') {
		j->pos++;
		put_op(b, ']');
		if (alcm_io_json_peek(j) == ']') {
			j->pos++;
			return ALCM_OK;
		}
		put_op(b, '(');
		for (;;) {
			int rc = json_value(j, b, depth + 1, 0);
			if (rc)
				return rc;
			c = alcm_io_json_peek(j);
			j->pos++;
			if (c == ']')
				break;
			if (c != ',') {
				j->pos--;
				return alcm_io_json_error(j, ALCM_E_CORRUPT, "expected ',' or ']'");
			}
		}
		put_op(b, 'e');
		return ALCM_OK;
	}
	if (c != '{')
		return alcm_io_json_error(j, ALCM_E_CORRUPT, "expected a JSON value");
	j->pos++;
	if (outer)
		put_empty_ordered_dict(b);
	else
		put_op(b, '}');
	if (alcm_io_json_peek(j) == '}') {
		j->pos++;
		return ALCM_OK;
	}
	put_op(b, '(');
	for (;;) {
		if (alcm_io_json_peek(j) != '"')
			return alcm_io_json_error(j, ALCM_E_CORRUPT, "expected a key");
		int rc = json_value(j, b, depth + 1, 0);
		if (rc || alcm_io_json_expect(j, ':') || (rc = json_value(j, b, depth + 1, 0)))
			return rc ? rc : j->status;
		c = alcm_io_json_peek(j);
		j->pos++;
		if (c == '}')
			break;
		if (c != ',') {
			j->pos--;
			return alcm_io_json_error(j, ALCM_E_CORRUPT, "expected ',' or '}'");
		}
	}
	put_op(b, 'u');
	return ALCM_OK;
}

int alcm_io_pickle_write(alcm_io_sb *b, const alcm_io_pkw_tensor *t, size_t n, int ordered,
                         const uint8_t *meta, size_t meta_len, size_t *bad_at,
                         const char **why)
{
	static const uint8_t proto[2] = {0x80, 2};
	alcm_io_sb_put(b, proto, 2);
	if (ordered)
		put_empty_ordered_dict(b);
	else
		put_op(b, '}');
	if (n) {
		put_op(b, '(');
		for (size_t i = 0; i < n; i++) {
			put_str(b, t[i].name, t[i].name_len);
			put_tensor(b, &t[i]);
		}
		put_op(b, 'u');
	}
	if (meta && ordered) {
		alcm_io_json j = {.p = meta, .len = meta_len};
		put_op(b, '}');
		put_str(b, "_metadata", 9);
		if (alcm_io_json_peek(&j) != '{')
			alcm_io_json_error(&j, ALCM_E_CORRUPT, "expected an object");
		else
			json_value(&j, b, 0, 1);
		if (!j.status) {
			alcm_io_json_ws(&j);
			if (j.pos != j.len)
				alcm_io_json_error(&j, ALCM_E_CORRUPT, "bytes after the object");
		}
		if (j.status) {
			*bad_at = j.err_pos;
			*why = j.err;
			return j.status;
		}
		put_op(b, 's');
		put_op(b, 'b');
	}
	put_op(b, '.');
	return b->oom ? ALCM_E_NOMEM : ALCM_OK;
}
