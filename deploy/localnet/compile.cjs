// Compiles the project's Solidity with the pinned npm solc and prints {name: {abi, bytecode, deployedBytecode}} as
// JSON: the local reference venues (deploy/localnet/contracts/*.sol) and what Ballast deploys in production
// (contracts/*.sol at the repository's top). Source units are named by their path from the repository's top.
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const root = path.join(__dirname, "..", "..");
const sources = {};
for (const dir of ["deploy/localnet/contracts", "contracts"]) {
  for (const file of fs.readdirSync(path.join(root, dir)).filter((f) => f.endsWith(".sol")).sort()) {
    sources[`${dir}/${file}`] = { content: fs.readFileSync(path.join(root, dir, file), "utf8") };
  }
}
const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) process.stderr.write(e.formattedMessage + "\n");
  process.exit(1);
}
const result = {};
for (const file of Object.keys(output.contracts)) {
  for (const [name, c] of Object.entries(output.contracts[file])) {
    result[name] = { abi: c.abi, bytecode: "0x" + c.evm.bytecode.object, deployedBytecode: "0x" + c.evm.deployedBytecode.object };
  }
}
process.stdout.write(JSON.stringify(result));
