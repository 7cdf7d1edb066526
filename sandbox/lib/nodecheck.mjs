// Imported first by server.mjs, so it runs before the SDK is loaded: the SDK
// needs Node.js 20 or newer (on 18, every request fails later with
// "crypto is not defined"). Says what to do and exits 2.
const major = Number(process.versions.node.split('.')[0]);
if (major < 20) {
    process.stderr.write(`favcrm-sandbox: Node.js ${process.versions.node} is too old; the sandbox needs Node.js 20 or newer.\n` +
        '  From the repository: bash .ci/node.sh   (brings Node.js 20 from the npm registry and prints its folder;\n' +
        '  put that folder first on PATH), or install Node.js 20+ from your distribution.\n');
    process.exit(2);
}
