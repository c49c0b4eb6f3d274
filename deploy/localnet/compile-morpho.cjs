// Compiles Morpho Blue 1.0.0 from the npm package's own sources (never a copy) with the solc its pragma names
// (0.8.19, the npm alias solc-0.8.19) and Morpho's release settings (via-IR, 999,999 optimizer runs), and prints
// {name: {abi, bytecode, deployedBytecode}} as JSON.
const fs = require("fs");
const path = require("path");
const solc = require("solc-0.8.19");

const src = path.join(__dirname, "node_modules", "@morpho-org", "morpho-blue", "src");
const input = {
  language: "Solidity",
  sources: { "Morpho.sol": { content: fs.readFileSync(path.join(src, "Morpho.sol"), "utf8") } },
  settings: {
    viaIR: true,
    optimizer: { enabled: true, runs: 999999 },
    evmVersion: "paris",
    outputSelection: { "Morpho.sol": { Morpho: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
  },
};
// Imports resolve inside the package's src/ only.
function findImports(file) {
  const resolved = path.resolve(src, file);
  if (!resolved.startsWith(src + path.sep)) return { error: `import outside the package: ${file}` };
  return { contents: fs.readFileSync(resolved, "utf8") };
}
const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) process.stderr.write(e.formattedMessage + "\n");
  process.exit(1);
}
const c = output.contracts["Morpho.sol"].Morpho;
process.stdout.write(JSON.stringify({
  Morpho: { abi: c.abi, bytecode: "0x" + c.evm.bytecode.object, deployedBytecode: "0x" + c.evm.deployedBytecode.object },
}));
