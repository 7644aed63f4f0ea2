// The model a request is for, as the key of nginx's `hash $dmr_model consistent` (dmr-cluster.conf).
//
// Requests for one model should reach the host that already has it loaded (weights in memory, its
// KV cache and prompt cache warm), so the key is the model, written the way dmr normalises it:
// "smollm2", "ai/smollm2", "docker.io/ai/smollm2:latest" are one model and give one key.
//
// Where the name is, first found wins:
//   1. the X-DMR-Model header, which any client can set (cheap: nginx needs no body parsing);
//   2. the JSON body's "model" (OpenAI, Anthropic, Ollama), "from" (DMR's POST /models/create) or
//      "name" (Ollama's older pull/show bodies);
//   3. nothing: the empty key, which still hashes to one host (GETs such as /engines/ps).
//
// Runs in njs 0.7.9 (Debian 12's libnginx-mod-http-js). js_set handlers must be synchronous; the body
// is already read when the upstream's hash is computed, because proxy_pass reads the whole body first
// (proxy_request_buffering on, nginx's default). A body larger than client_body_buffer_size lies in a
// temporary file, where njs cannot read it: such a request gets the empty key (it is still served,
// only without affinity), so keep client_body_buffer_size above the usual chat request.

var DEFAULT_REGISTRY = 'docker.io';
var DEFAULT_NAMESPACE = 'ai';
var HUB_NAMES = ['docker.io', 'index.docker.io', 'registry-1.docker.io'];

function model(r) {
    var named = r.headersIn['X-DMR-Model'];
    return canonical(named ? named : fromBody(r));
}

function fromBody(r) {
    var text;
    try {
        text = r.requestText;  // undefined without a body; throws when the body lies in a file
    } catch (e) {
        return '';
    }
    if (!text || text.charAt(0) !== '{') {
        return '';
    }
    var body;
    try {
        body = JSON.parse(text);
    } catch (e) {
        return '';  // dmr answers the bad JSON itself, in the API's own error shape
    }
    var name = body.model || body.from || body.name;
    return typeof name === 'string' ? name : '';
}

// dmr's parse_reference (dmr_core/store/references.py), without its validation: a bad name only
// needs a stable key, and dmr rejects it with a 400 wherever it lands.
function canonical(name) {
    name = name.trim();
    if (!name) {
        return '';
    }
    var at = name.lastIndexOf('@');
    var digest = at >= 0 ? name.slice(at).toLowerCase() : '';
    var rest = at >= 0 ? name.slice(0, at) : name;
    var colon = rest.lastIndexOf(':');
    var tag = colon > rest.lastIndexOf('/') ? rest.slice(colon + 1) : 'latest';
    var path = (colon > rest.lastIndexOf('/') ? rest.slice(0, colon) : rest).toLowerCase();
    return repository(path) + (digest ? digest : ':' + tag);
}

function repository(path) {
    if (path.indexOf('hf.co/') === 0) {
        return 'huggingface.co/' + path.slice('hf.co/'.length);
    }
    if (path.indexOf('/') < 0) {
        return DEFAULT_REGISTRY + '/' + DEFAULT_NAMESPACE + '/' + path;
    }
    var first = path.split('/')[0];
    var isRegistry = first.indexOf('.') >= 0 || first.indexOf(':') >= 0 || first === 'localhost';
    if (!isRegistry) {
        return DEFAULT_REGISTRY + '/' + path;
    }
    if (HUB_NAMES.indexOf(first) >= 0) {
        return DEFAULT_REGISTRY + path.slice(first.length);
    }
    return path;
}

export default {model: model, canonical: canonical};
