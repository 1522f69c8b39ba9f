import { CatalogueError } from '../agents/errors.mjs';

export declare const BUILD_IMAGE_ERRORS: Readonly<Record<string, { readonly exit: number; readonly summary: string }>>;
export declare class BuildImageError extends CatalogueError {}
