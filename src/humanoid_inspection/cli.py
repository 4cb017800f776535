"""`humanoid-inspection` command: one entry point, one module per sub-command.

Each sub-command lives in its own module with a `main(argv) -> int`; this file only maps names
to modules, so importing the CLI stays cheap (torch, MuJoCo, ... load only when used).
"""

import importlib
import sys

# sub-command -> (module, one-line help)
COMMANDS = {
    'demo': ('humanoid_inspection.cell.demo', 'run the simulated inspection cell end to end'),
    'launch': ('humanoid_inspection.launcher', 'start the ROS 2 stack as separate processes'),
    'inspect': ('humanoid_inspection.xray.inspect_cli',
                'inspect radiograph files/folders without ROS; JSON + HTML report'),
    'xray-dataset': ('humanoid_inspection.xray.dataset_cli',
                     'generate simulated radiographs with COCO-style ground truth'),
    'xray-train': ('humanoid_inspection.xray.train_cli', 'train the learned defect detector'),
    'xray-eval': ('humanoid_inspection.xray.evaluate_cli',
                  'evaluate defect detectors (synthetic or GDXray-style folders)'),
    'report': ('humanoid_inspection.cell.report_cli', 'render the HTML report of a cell run'),
}


def usage() -> str:
    """The help text listing every sub-command."""
    width = max(len(name) for name in COMMANDS)
    lines = ['usage: humanoid-inspection COMMAND [ARGS...]', '', 'commands:']
    lines += [f'  {name.ljust(width)}  {text}' for name, (_, text) in COMMANDS.items()]
    return '\n'.join(lines)


def main(argv=None) -> int:
    """Dispatch to the sub-command's module; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help', 'help'):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"humanoid-inspection: unknown command '{name}'\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == '__main__':
    sys.exit(main())
