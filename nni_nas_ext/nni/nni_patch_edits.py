"""What :mod:`.nni_patch` edits in NNI 3.0's ``nni_node``: each file's SHA-256 as ``nni==3.0`` ships it and its
(original, patched) text pairs, one :class:`FilePatch` per edit (``pairing``, ``bind``, ``reason``, ``workers``; the
module docstring of :mod:`.nni_patch` says why each exists). Data only: applying, checking and reverting live in
:mod:`.nni_patch`, which re-exports these names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["BIND", "BIND_HOST_ENV", "BIND_SHA256", "FIXES", "FilePatch", "ORIGINAL_SHA256", "PAIRING", "REASON",
           "REASON_SHA256", "WORKERS", "WORKERS_SHA256"]

ORIGINAL_SHA256 = "9334774e798bd14efc5ccc0c78eef8d5fd14f91ead38ab71e9f468cdf9c05e99"
"""SHA-256 of ``nni_node/training_service/v3/compat.js`` as the ``nni==3.0`` wheel installs it (its RECORD
says ``sha256=kzR3TnmL0U78XMwMeO741f0U-R6tOKtx6fRozfnAXpk``, 9028 bytes)."""

# (original text, patched text): each original occurs exactly once in the file NNI 3.0 ships.
_EDITS: tuple[tuple[str, str], ...] = (
    # submitTrialJob(): no shared queue; a resumed trial keeps its allocation as before
    (
        "        if (trialId === null) {\n"
        "            this.parameters.push(form.hyperParameters.value);\n"
        "        }\n"
        "        else {\n"
        "            this.allocatedParameters.set(trialId, form.hyperParameters.value);\n"
        "        }\n",
        "        // nni-nas-ext patch (NNI 3.0 FIFO parameter bug): each trial gets the parameter it was created for\n"
        "        if (trialId !== null) {\n"
        "            this.allocatedParameters.set(trialId, form.hyperParameters.value);\n"
        "        }\n",
    ),
    # submitTrialJob(): allocate the parameter to the new trial as soon as its id is known
    (
        "                trialId = await this.v3.createTrial(envId, this.config.trialCommand, 'trial_code', "
        "form.sequenceId);\n",
        "                trialId = await this.v3.createTrial(envId, this.config.trialCommand, 'trial_code', "
        "form.sequenceId);\n"
        "                if (trialId) {  // nni-nas-ext patch\n"
        "                    this.allocatedParameters.set(trialId, form.hyperParameters.value);\n"
        "                }\n",
    ),
    # start(): a trial that asks before createTrial() returned waits for its own parameter
    (
        "        this.v3.onRequestParameter(async (trialId) => {\n"
        "            if (this.allocatedParameters.has(trialId)) {\n",
        "        this.v3.onRequestParameter(async (trialId) => {\n"
        "            // nni-nas-ext patch: the request may come before createTrial() has returned this trial's id\n"
        "            for (let i = 0; i < 100 && !this.allocatedParameters.has(trialId); i++) {\n"
        "                await (0, promises_2.setTimeout)(100);\n"
        "            }\n"
        "            if (this.allocatedParameters.has(trialId)) {\n",
    ),
)


BIND_SHA256 = "91ee1863512e18ed8c92de6ff9d9b6c62eb9c2d80d4eac452852491d15a34b91"
"""SHA-256 of ``nni_node/rest_server/index.js`` as ``nni==3.0`` installs it (RECORD:
``sha256=ke4YY1EuGO2Mkt5v-dm2xi65wtgNTqxFKFJJHRWjS5E``, 5381 bytes)."""

BIND_HOST_ENV = "NNI_NAS_EXT_HOST"
"""The environment variable the patched manager reads for its listen address (default 127.0.0.1)."""

_BIND_EDITS: tuple[tuple[str, str], ...] = (
    (
        "        this.server = app.listen(this.port);\n",
        "        // nni-nas-ext patch: loopback unless NNI_NAS_EXT_HOST names another address (README, Security)\n"
        "        const host = process.env.NNI_NAS_EXT_HOST || '127.0.0.1';\n"
        "        logger.info(`REST server listens on ${host} (nni-nas-ext patch; set NNI_NAS_EXT_HOST to change)`);\n"
        "        this.server = app.listen(this.port, host);\n",
    ),
)


REASON_SHA256 = "4f45d543c1f6c65a9712e947e0ebcefb364a354fa07045a961ec5e4f1ba11971"
"""SHA-256 of ``nni_node/core/nnimanager.js`` as ``nni==3.0`` installs it (RECORD:
``sha256=T0XVQ8H2xlqXEulH4OvO-zZKNU-gcEWpYexeTxuhGXE``, 37315 bytes)."""

_REASON_EDITS: tuple[tuple[str, str], ...] = (
    (
        "            this.criticalError(new Error('Dispatcher stream error, tuner may have crashed.'));\n",
        "            // nni-nas-ext patch: the dispatcher's own reason in the experiment's status (portal, nnictl, REST)\n"  # noqa: E501 - patch text
        "            this.criticalError(new Error(`Dispatcher error: ${error.message}`));\n",
    ),
)


@dataclass(frozen=True)
class FilePatch:
    """One edit of one file of ``nni_node``: where, the original's SHA-256, (original, patched) text pairs."""

    name: str
    relpath: str
    original_sha256: str
    edits: tuple[tuple[str, str], ...]
    applied: str
    """What the patched file does, for messages."""
    original: str
    """What NNI's original does, for messages."""

    def path(self) -> Path:
        from .nni_patch import nni_node_path  # the mechanics' module (it imports this one)

        return nni_node_path() / self.relpath


PAIRING = FilePatch("pairing", "training_service/v3/compat.js", ORIGINAL_SHA256, _EDITS,
                    "each trial receives the parameter it was created for (NNI 3.0 FIFO bug fixed)",
                    "NNI 3.0's original (first-in-first-out parameters)")
BIND = FilePatch("bind", "rest_server/index.js", BIND_SHA256, _BIND_EDITS,
                 f"the portal and REST API listen on 127.0.0.1, or on ${BIND_HOST_ENV} when it is set",
                 "NNI 3.0's original (the portal and REST API listen on every interface)")
REASON = FilePatch("reason", "core/nnimanager.js", REASON_SHA256, _REASON_EDITS,
                   "an experiment whose dispatcher fails shows the dispatcher's own message as its error (portal, "
                   "nnictl, REST check-status)",
                   "NNI 3.0's original (a failed dispatcher shows only 'Dispatcher stream error, tuner may have "
                   "crashed.')")
WORKERS_SHA256 = "174924b5aa714c2f5475e566abab448a435adb977154b1f60b15289c74ccbe3f"
"""SHA-256 of ``nni_node/training_service/remote_v3/remote.js`` as ``nni==3.0`` installs it."""

_WORKERS_PROXY = r"""
// nni-nas-ext patch: the remote workers' channels on nniManagerIp, the REST API and portal kept off it (README,
// "Running on several machines"). An HTTP server on nniManagerIp:port that answers 403 to every request and
// forwards to the manager (127.0.0.1, or $NNI_NAS_EXT_HOST) only the WebSocket upgrades of this training
// service's worker channels (<prefix>/platform/<id>[/<channel>]).
function nniNasExtWorkerProxy(ip, channelPath, log) {
    const globals = require("common/globals").default;
    const listen = process.env.NNI_NAS_EXT_HOST || '127.0.0.1';
    if (!ip || ip === listen || listen === '0.0.0.0' || ip === 'localhost') {
        return Promise.resolve(null);
    }
    const port = globals.args.port;
    const allowed = (globals.args.urlPrefix ? '/' + globals.args.urlPrefix : '') + channelPath;
    const server = require("node:http").createServer((_req, res) => {
        res.writeHead(403, { 'Content-Type': 'text/plain' });
        res.end("nni-nas-ext: only the remote workers' channels are served on this address\n");
    });
    server.on('upgrade', (req, socket, head) => {
        const path = (req.url || '').split('?')[0];
        if (path !== allowed && !path.startsWith(allowed + '/')) {
            socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\n\r\n');
            return;
        }
        const upstream = require("node:net").connect(port, listen, () => {
            let lines = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
            for (let i = 0; i < req.rawHeaders.length; i += 2) {
                lines += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
            }
            upstream.write(lines + '\r\n');
            if (head && head.length) {
                upstream.write(head);
            }
            socket.pipe(upstream);
            upstream.pipe(socket);
        });
        const close = () => { socket.destroy(); upstream.destroy(); };
        upstream.on('error', close);
        socket.on('error', close);
    });
    return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, ip, () => {
            log.info(`nni-nas-ext: the workers' channels ${allowed} are served on ${ip}:${port} (nothing else)`);
            resolve(server);
        });
    });
}
"""

_WORKERS_EDITS: tuple[tuple[str, str], ...] = (
    (
        'const worker_1 = require("./worker");\n',
        'const worker_1 = require("./worker");\n' + _WORKERS_PROXY,
    ),
    (
        "        await this.server.start();\n"
        "        await Promise.all(this.config.machineList.map(workerConfig => this.launchWorker(workerConfig)));\n",
        "        await this.server.start();\n"
        "        this.nniNasExtProxy = await nniNasExtWorkerProxy(this.config.nniManagerIp, `/platform/${this.id}`,\n"
        "                                                          this.log);  // nni-nas-ext patch\n"
        "        await Promise.all(this.config.machineList.map(workerConfig => this.launchWorker(workerConfig)));\n",
    ),
    (
        "        await Promise.allSettled(this.workers.map(worker => worker.stop()));\n",
        "        await Promise.allSettled(this.workers.map(worker => worker.stop()));\n"
        "        if (this.nniNasExtProxy) {  // nni-nas-ext patch\n"
        "            this.nniNasExtProxy.close();\n"
        "        }\n",
    ),
)
WORKERS = FilePatch("workers", "training_service/remote_v3/remote.js", WORKERS_SHA256, _WORKERS_EDITS,
                    "the remote workers reach the manager on nniManagerIp through a proxy that forwards only their "
                    "WebSocket channels; the portal and REST API stay on 127.0.0.1 (or $NNI_NAS_EXT_HOST)",
                    "NNI 3.0's original (the workers connect to the REST server's own address, so the REST API "
                    "must listen where they reach it)")
FIXES: dict[str, FilePatch] = {"pairing": PAIRING, "bind": BIND, "reason": REASON, "workers": WORKERS}
