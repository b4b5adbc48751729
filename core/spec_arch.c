/* spec_arch.c - "model": {"arch": NAME, ...}: reference architectures by
 * name, as a lab writes torchvision.models.resnet18(num_classes=10) or
 * nanoGPT's GPT(config) rather than a list of layers.
 *
 * One table row per name: the fields it accepts, a parser filling its
 * config in SpecArch, the sizes of its model for a batch (shapes and
 * counts from the config alone, as spec_shapes.c does for layer lists), and
 * its builder. Each arch's row functions live beside its module in core/nn
 * and its config parser here in core/spec_*.c.
 */
#include <stdio.h>
#include <string.h>

#include "core/error.h"
#include "core/spec_json.h"

typedef struct {
    const char *name; /* "resnet18" */
    SpecArchKind kind;
    const char *const *fields; /* accepted keys, "arch" among them */
    int (*parse)(const json_t *model, const char *name, SpecArch *out);
    int (*size)(const SpecArch *arch, DType dtype, int ndim, const int64_t *x,
                SpecModelSize *size);
    Module *(*build)(const SpecArch *arch, Rng *rng);
} ArchKind;

static const char *const gpt_fields[] = {"arch",   "vocab_size", "block_size", "n_layer",
                                         "n_head", "n_embd",     "dropout",    "bias", NULL};

static const ArchKind arch_kinds[] = {
    {"gpt", SPEC_ARCH_GPT, gpt_fields, spec_gpt_parse, spec_gpt_size, spec_gpt_build},
    {"resnet18", SPEC_ARCH_RESNET, spec_resnet_fields, spec_resnet_parse, spec_resnet_size,
     spec_resnet_build},
    {"resnet34", SPEC_ARCH_RESNET, spec_resnet_fields, spec_resnet_parse, spec_resnet_size,
     spec_resnet_build},
    {"resnet50", SPEC_ARCH_RESNET, spec_resnet_fields, spec_resnet_parse, spec_resnet_size,
     spec_resnet_build},
    {NULL, SPEC_ARCH_NONE, NULL, NULL, NULL, NULL}, /* end */
};

static const ArchKind *find_kind(const char *name) {
    for (const ArchKind *k = arch_kinds; k->name; k++)
        if (strcmp(k->name, name) == 0) return k;
    return NULL;
}

static const ArchKind *kind_of(const SpecArch *arch) {
    const ArchKind *k = find_kind(arch->name);
    if (!k) error_at("model.arch", "unknown arch '%s'", arch->name);
    return k;
}

static int unknown_arch(const char *name) {
    char list[256] = "";
    size_t n = 0;
    for (const ArchKind *k = arch_kinds; k->name && n < sizeof list; k++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", n ? ", " : "", k->name);
    return error_at("model.arch", "unknown arch '%s' (known: %s)", name, list);
}

int spec_arch_parse(SpecArch *arch, const json_t *model) {
    const char *name;
    if (spec_get_string(model, "model", "arch", true, &name)) return -1;
    const ArchKind *k = find_kind(name);
    if (!k) return unknown_arch(name);
    if (spec_check_fields(model, "model", k->fields, name)) return -1;
    memset(arch, 0, sizeof *arch);
    arch->kind = k->kind;
    snprintf(arch->name, sizeof arch->name, "%s", name);
    return k->parse(model, name, arch);
}

Module *spec_arch_build(const SpecArch *arch, Rng *rng) {
    const ArchKind *k = kind_of(arch);
    Module *m = k ? k->build(arch, rng) : NULL;
    if (!m && k) error_prefix("model (%s)", arch->name);
    return m;
}

int spec_arch_size(const SpecArch *arch, DType dtype, int ndim, const int64_t *x,
                   SpecModelSize *size) {
    const ArchKind *k = kind_of(arch);
    if (!k) return -1;
    if (k->size(arch, dtype, ndim, x, size) == 0) return 0;
    error_prefix("model (%s)", arch->name);
    return error_set_path("model");
}
