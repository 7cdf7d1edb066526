-- favcrm-lua for Neovim: the :FavCRM command (see :help favcrm). The work
-- is in lua/favcrm/nvim/commands.lua, loaded on first use; :checkhealth
-- favcrm is lua/favcrm/health.lua.
if vim.g.loaded_favcrm then return end
vim.g.loaded_favcrm = true

-- lua-cjson from Neovim (vim.json) where none is installed for its LuaJIT
require("favcrm.nvim").use_vim_json()

vim.api.nvim_create_user_command("FavCRM", function(opts)
  require("favcrm.nvim.commands").run(opts.args)
end, {
  nargs = "*",
  desc = "FavCRM: doctor | signup | tools | call {tool} {json} | login | logout",
  complete = function(arglead, cmdline)
    return require("favcrm.nvim.commands").complete(arglead, cmdline)
  end,
})
