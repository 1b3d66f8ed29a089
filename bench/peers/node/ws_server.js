// Peer: node `ws`, the raw ceiling on this machine. Every text message any client sends is
// sent to every connected client. Usage: node ws_server.js PORT  (prints READY when listening)
"use strict";
const { WebSocketServer } = require("ws");

const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(process.argv[2]), perMessageDeflate: false });
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    for (const client of wss.clients) client.send(data, { binary: isBinary });
  });
});
wss.on("listening", () => console.log("READY"));
